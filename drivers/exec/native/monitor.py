"""The native driver's monitor: ``common.monitor.Monitor`` whose first process is cloned by
``container.spawn``.

The container's first process is cloned in new namespaces by ``container.spawn`` and sets up
its own isolation (in C); it reports on a unix socket once its namespaces exist and waits on a
pipe for the go (after the network driver's turn, with ``request.handshake``, which runs
while the process sets up its mounts: the monitor sends the pid as soon as the clone returns). It joins its
cgroups itself (``Launch.cgroup_files``, see ``cgroups.ContainerCgroups.join_files``); the monitor
records ``state.json`` (its pid) once it started. With a tty, the pty is one of the container's
own devpts, opened by that process: its master comes with the report (``tty_stdio``).
"""

from __future__ import annotations

import json
import os
import signal
import socket

from moorage.drivers.exec.common import monitor as common
from moorage.drivers.exec.common import terminal
from moorage.drivers.exec.common.monitor import STATE_FILE, Monitor, remove_cgroups, replace_file, send
from moorage.drivers.exec.common.requests import MonitorRequest
from moorage.drivers.exec.native import container


class NativeMonitor(Monitor):
    def tty_stdio(self) -> tuple[tuple[int, int, int], list[int]]:
        # the container's process opens its pty inside and takes the slave itself; until then
        # its stdio are /dev/null, and the master comes with its report (``_ready``)
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        return (null, null, null), [null]

    def _ready(self, sync_r: int) -> bytes:
        """The container process's first report; with a tty, the pty master that comes with an
        ``R`` becomes ``self.master``."""
        with socket.socket(fileno=sync_r) as sync:
            try:
                ready, master = terminal.receive(sync, 65536)
            finally:
                sync.detach()
        if master >= 0:
            try:
                terminal.check_master(master)
            except OSError as exc:
                self._fail(str(exc))
            self.master = master
        elif self.tty and ready.startswith(b"R"):
            self._fail("the container process sent no terminal")
        return ready

    def spawn(self, stdio: tuple[int, int, int], child_fds: list[int]) -> None:
        request = self.request
        # a unix socket rather than a pipe: a tty's master comes with the report
        sync_r, sync_w = (end.detach() for end in socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM))
        go_r, go_w = os.pipe()
        launch: container.Launch = request.start
        pid = container.spawn(launch, stdio, self.tty, sync_w, go_r)
        self.pid = self.init_pid = pid
        for fd in (*child_fds, sync_w, go_r):
            os.close(fd)
        handshake = request.handshake
        if handshake:
            # the namespaces exist from the clone on: the network driver's turn runs while the
            # process sets up its mounts, and the go waits for both (a failed setup is reported
            # as the start's error, and the driver's answer is then not read)
            send(self.chan, {"pid": pid})
        else:  # nobody needs the namespace before the command runs: no round trip
            os.write(go_w, b"G")
        ready = self._ready(sync_r)
        if not ready.startswith(b"R"):
            self._fail(ready[1:].decode(errors="replace") or "the container process died during setup")
        early = ready[1:]  # without the handshake, an "E..." may follow "R" in the same read
        if handshake:
            answer = self.chan.recv(64)
            if answer != b"go":
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self._cleanup_socket()
                if not answer:  # the daemon died mid-start: nobody else will remove the cgroups
                    remove_cgroups(list(launch.cgroup_files))
                os._exit(0)
            os.write(go_w, b"G")
        os.close(go_w)
        result = early
        while chunk := os.read(sync_r, 65536):
            result += chunk
        os.close(sync_r)
        if result:
            self._fail(result[1:].decode(errors="replace"))
        send(self.chan, {"pid": pid, "started": True})
        self.chan.close()
        # after the answer: off the start's critical path; only a restarted daemon reads it
        replace_file(self.exec_dir / STATE_FILE, json.dumps({"pid": pid}).encode())


def main(request: bytes, chan_fd: int) -> None:
    """The monitor process's whole life; never returns."""
    common.main(NativeMonitor, MonitorRequest.from_json(request, container.Launch), chan_fd)
