"""The per-container monitor of the ``lxc`` driver: the shared monitor loop around liblxc.

Forked by the driver's zygote (``zygote.py``) in a session of its own, so it outlives the
daemon. It holds the container's pipes or pty, logs, serves ``monitor.sock`` and records
``exit.json`` as the native driver's monitor does (both are ``common.monitor.Monitor``; this
module supplies ``spawn``).

Its child, the *launcher*, runs the container through liblxc in the foreground (it is LXC's
own monitor process: it keeps the container and its cgroups) and exits with the container's
exit status (``128 + n`` for a signal). The start handshake on ``chan`` is the native one: the
LXC ``start-host`` hook writes the init's host pid to ``start.fifo``; the monitor brings ``lo``
up and sets the domain name in the container's namespaces; with ``request.handshake`` (the
network driver must configure the namespace first) it sends ``{"pid": n}`` and waits for ``go``
or ``abort``; it answers the hook on ``go.fifo``, and once init has executed the command it
confirms ``{"pid": n, "started": true}``, or sends ``{"error": ...}`` with LXC's log lines.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from moorage.drivers.exec.common import linux
from moorage.drivers.exec.common import monitor as common
from moorage.drivers.exec.common.monitor import Monitor, enter_session, send
from moorage.drivers.exec.common.requests import MonitorRequest
from moorage.drivers.exec.lxc import files as config
from moorage.drivers.exec.lxc import liblxc

START_TIMEOUT = 30.0


def _in_child(action: Callable[[], None]) -> str:
    """Run ``action`` in a forked helper (so that it may join namespaces or chroot); returns the
    error message it reported, or ""."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - reported through the pipe
            os.write(w, str(exc).encode(errors="replace"))
            os._exit(1)
        os._exit(0)
    os.close(w)
    message = b""
    while chunk := os.read(r, 4096):
        message += chunk
    os.close(r)
    os.waitpid(child, 0)
    return message.decode(errors="replace")


def prepare_namespaces(pid: int, isolate_network: bool, domainname: str) -> str:
    """Bring ``lo`` up and set the domain name inside the container (a forked helper joins its
    namespaces, as LXC has no setting for either); returns an error message or ""."""
    if not isolate_network and not domainname:
        return ""

    def prepare() -> None:
        if isolate_network:
            linux.setns(pid, "net", linux.CLONE_NEWNET)
            linux.loopback_up()
        if domainname:
            linux.setns(pid, "uts", linux.CLONE_NEWUTS)
            linux.setdomainname(domainname)

    return _in_child(prepare)


def make_working_dir(rootfs: str, working_dir: str) -> None:
    """Create the working directory as root, resolving symlinks inside the rootfs (a forked
    helper chroots), before LXC switches to the container's user; RuntimeError if impossible."""
    def make() -> None:
        os.chroot(rootfs)
        os.chdir("/")
        os.makedirs(working_dir, mode=0o755, exist_ok=True)

    message = _in_child(make)
    if message:
        raise RuntimeError(f"cannot create the working directory {working_dir}: {message}")


@dataclass(frozen=True)
class LxcStart:
    """What the lxc monitor starts a container with: LXC's name, lxcpath and config file for it,
    the init's argv, the ``LxcConf`` options, and what the monitor prepares itself."""

    name: str
    lxcpath: str
    config: str
    argv: tuple[str, ...]
    options: tuple[tuple[str, str], ...]
    rootfs: str  # resolved
    working_dir: str
    isolate_network: bool
    domainname: str

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LxcStart:
        """From its JSON form (``dataclasses.asdict``)."""
        return cls(**{**data, "argv": tuple(data["argv"]), "options": tuple(tuple(o) for o in data["options"])})


def _launch(start: LxcStart, stdio: tuple[int, int, int], tty: bool, report_fd: int) -> None:
    """The launcher's life (never returns): LXC's monitor for the container."""
    try:
        enter_session(stdio, tty, (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD))
        os.dup2(report_fd, 3)
        os.closerange(4, 1 << 16)  # the monitor's sockets and log must not live on in LXC's processes
        lib = liblxc.load()
        status = liblxc.run_foreground(lib, start.name, start.lxcpath, start.config, list(start.argv),
                                         list(start.options))
    except BaseException as exc:  # noqa: BLE001 - reported to the monitor
        try:
            os.write(3, f"{exc}".encode(errors="replace"))
        finally:
            os._exit(255)
    os._exit(exit_code(status))


def exit_code(status: int) -> int:
    """The exit status (``128 + n`` for signal ``n``) of liblxc's ``error_num``: a wait status,
    except that an init killed by a signal is reported in the *stopped* form ``n << 8 | 0x7f``."""
    low = status & 0x7F
    if low == 0:
        return (status >> 8) & 0xFF
    if low == 0x7F:
        return 128 + ((status >> 8) & 0xFF)
    return 128 + low


class LxcMonitor(Monitor):
    def __init__(self, request: MonitorRequest, chan: socket.socket) -> None:
        super().__init__(request, chan)
        self.report_r = -1
        self.pidfd = -1

    def spawn(self, stdio: tuple[int, int, int], child_fds: list[int]) -> None:
        start: LxcStart = self.request.start
        make_working_dir(start.rootfs, start.working_dir)
        fifos = {}
        for name in (config.START_FIFO, config.GO_FIFO):
            path = self.exec_dir / name
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            os.mkfifo(path, 0o600)
            # held open read-write by the monitor: never EOF, and a written answer is kept until read
            fifos[name] = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self.report_r, report_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _launch(start, stdio, self.tty, report_w)
        self.pid = pid
        for fd in (*child_fds, report_w):
            os.close(fd)
        self.pidfd = os.pidfd_open(pid)
        self.init_pid = self._await_hook(fifos[config.START_FIFO])
        problem = prepare_namespaces(self.init_pid, start.isolate_network, start.domainname)
        if problem:
            self._abort(fifos[config.GO_FIFO], f"cannot prepare the container's namespaces: {problem}")
        if self.request.handshake:
            send(self.chan, {"pid": self.init_pid})
            if self.chan.recv(64) != b"go":
                self._abort(fifos[config.GO_FIFO], None)
        os.write(fifos[config.GO_FIFO], b"go\n")
        self._await_exec()
        for fd in fifos.values():
            os.close(fd)
        send(self.chan, {"pid": self.init_pid, "started": True})
        self.chan.close()

    def _launcher_exited(self, timeout: float) -> bool:
        return bool(select.select([self.pidfd], [], [], timeout)[0])

    def _await_hook(self, start_fd: int) -> int:
        deadline = time.monotonic() + START_TIMEOUT
        data = b""
        while b"\n" not in data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail("LXC did not start the container in time")
            ready, _, _ = select.select([start_fd, self.pidfd], [], [], remaining)
            if self.pidfd in ready:
                self._fail(None)
            if start_fd in ready:
                try:
                    data += os.read(start_fd, 64)
                except BlockingIOError:
                    pass
        return int(data.split(b"\n")[0])

    def _await_exec(self) -> None:
        """Until init has executed busybox (its exe is no longer the launcher's interpreter)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                ours = os.stat(f"/proc/{self.pid}/exe")
                exe = os.stat(f"/proc/{self.init_pid}/exe")
            except OSError:  # the launcher or init is gone already (a short command that ran and
                # ended): started, unless LXC says it failed
                if self._launcher_exited(START_TIMEOUT) and self._report():
                    self._fail(None)
                return
            if (exe.st_dev, exe.st_ino) != (ours.st_dev, ours.st_ino):
                return
            if self._launcher_exited(0.0005):
                if self._report():
                    self._fail(None)
                return
        self._fail("the container's init did not start in time")

    def _report(self) -> str:
        """What the launcher reported (only when LXC failed), once it exited."""
        os.set_blocking(self.report_r, False)
        try:
            return os.read(self.report_r, 65536).decode(errors="replace")
        except BlockingIOError:
            return ""

    def _lxc_errors(self) -> str:
        try:
            text = (self.exec_dir / config.LOG).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        messages = [line.split(" - ", 2)[-1] for line in text.splitlines() if " ERROR " in line]
        return "; ".join(dict.fromkeys(messages))

    def _abort(self, go_fd: int, message: str | None) -> None:
        os.write(go_fd, b"abort\n")
        if message is None:
            os.waitpid(self.pid, 0)
            self._cleanup_socket()
            os._exit(0)
        self._fail(message)

    def _stop_child(self, kill: bool) -> None:
        super()._stop_child(kill)
        if self.init_pid:  # the launcher's grandchild, in the container's pid namespace
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _explain(self, message: str | None) -> str:
        detail = self._lxc_errors() or self._report()
        text = message or "LXC could not start the container"
        return f"{text}: {detail}" if detail else text


def main(request: bytes, chan_fd: int) -> None:
    """The monitor process's whole life (forked by the zygote, in a session of its own)."""
    common.main(LxcMonitor, MonitorRequest.from_json(request, LxcStart), chan_fd)
