"""Socket activation (``moorage.socket``): the daemon serves the listening socket systemd
passes (``LISTEN_FDS``/``LISTEN_PID``, fd 3) instead of binding ``-H``, and leaves its file."""

from __future__ import annotations

import os
import textwrap
import uuid

import pytest
from conftest import MOORAGE, Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon runs as root")

# what systemd does between fork and exec: the socket as fd 3, LISTEN_PID the pid that execs
ACTIVATE = textwrap.dedent("""
    import os, socket, sys
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(sys.argv[1])
    sock.listen(16)
    if sock.fileno() != 3:
        os.dup2(sock.fileno(), 3)
    os.set_inheritable(3, True)
    os.environ.update(LISTEN_FDS="1", LISTEN_PID=str(os.getpid()), LISTEN_FDNAMES="moorage.socket")
    os.execv(sys.argv[2], sys.argv[2:])
""")


class ActivatedDaemon(Daemon):
    def argv(self) -> list[str]:
        unused = self.base / f"not-bound-{uuid.uuid4().hex[:6]}.sock"
        return [MOORAGE[0], "-c", ACTIVATE, str(self.sock), *MOORAGE, "daemon", "--config", str(self.config_path),
                "-g", str(self.root), "-H", f"unix://{unused}", "-p", str(self.pidfile), *self.flags]


def test_daemon_serves_the_socket_systemd_passes(tmp_path):
    daemon = ActivatedDaemon(tmp_path).start()
    try:
        with daemon.client() as client:
            assert client.get("/_ping").text == "OK"
            assert client.get("/version").status_code == 200
        assert not list(tmp_path.glob("not-bound-*.sock")), "-H was bound although systemd passed a socket"
    finally:
        daemon.stop()
    assert daemon.sock.exists(), "the socket file belongs to systemd: the daemon must not remove it"
