"""A published port taken by another program while the daemon was down (bench/soak.py found it):
after the restart the container cannot get its network back, so it is killed, and nothing of
it is left running or attached (before the fix, its process, monitor, veth and cgroups stayed
behind while the daemon said it had exited)."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path

from conftest import Daemon, eventually, import_image

from moorage.core.testing.network import host_links, quiet_host_port, settle
from moorage.drivers.network.bridge import host_veth_name

from .conftest import free_test_subnet, remove_bridge_and_table
from .test_daemon import SERVE, config


def test_a_container_whose_port_was_taken_is_killed_at_restart_leaving_nothing(tmp_path_factory, busybox_tar):
    suffix = uuid.uuid4().hex[:8]
    name, table = f"mtst{suffix}", f"moorage-test-{suffix}"
    base = tmp_path_factory.mktemp(f"netp-{suffix}")
    daemon = Daemon(base, config(name, table, free_test_subnet()))
    taker = socket.socket()
    try:
        daemon.start()
        import_image(daemon, busybox_tar)
        with daemon.client() as api:
            cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": SERVE,
                                                       "ExposedPorts": {"80/tcp": {}}}).json()["Id"]
            binding = {"HostIp": "127.0.0.1", "HostPort": str(quiet_host_port())}
            assert api.post(f"/containers/{cid}/start", json={"PortBindings": {"80/tcp": [binding]}}).status_code == 204
            data = api.get(f"/containers/{cid}/json").json()
            port = int(data["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"])
            pid = data["State"]["Pid"]
        daemon.kill()
        taker.bind(("127.0.0.1", port))  # another program takes the port while the daemon is down
        taker.listen(1)
        daemon.start()
        with daemon.client() as api:
            eventually(lambda: not api.get(f"/containers/{cid}/json").json()["State"]["Running"],
                       "the container without its published port to be killed")
        assert settle(lambda: not os.path.exists(f"/proc/{pid}")), "its process still runs"
        assert settle(lambda: host_veth_name(name, cid) not in host_links()), "its veth is left"
        left = [group for group in Path("/sys/fs/cgroup").glob(f"*/moorage/{cid}/cgroup.procs")
                if group.read_text().split()]
        assert not left, "processes are left in its cgroups"
        assert "its network could not be restored" in daemon.log()
    finally:
        taker.close()
        if daemon.proc is not None and daemon.proc.poll() is not None:
            with contextlib.suppress(RuntimeError):
                daemon.start()  # killed above: its containers outlive it until a daemon removes them
        daemon.dispose()
        remove_bridge_and_table(name, table)
