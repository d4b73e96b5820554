"""The per-container monitor of the ``lxc`` driver: the native monitor's I/O loop around liblxc.

Forked by the driver's zygote (``zygote.py``) in a session of its own, so it outlives the
daemon. It holds the container's pipes or pty, logs, serves ``monitor.sock`` and
records ``exit.json`` exactly as the native monitor does (it reuses that loop and protocol).

Its child, the *launcher*, runs the container through liblxc in the foreground (it is LXC's
own monitor process: it keeps the container and its cgroups) and exits with the container's
exit status (``128 + n`` for a signal). The start handshake on ``chan`` is the native one: the
LXC ``start-host`` hook writes the init's host pid to ``start.fifo``; the monitor brings ``lo``
up and sets the domain name in the container's namespaces; with ``request["handshake"]`` (the
network driver must configure the namespace first) it sends ``{"pid": n}`` and waits for ``go``
or ``abort``; it answers the hook on ``go.fifo``, and once init has executed the command it
confirms ``{"pid": n, "started": true}``, or sends ``{"error": ...}`` with LXC's log lines.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import time
from pathlib import Path
from typing import Any

from moorage.core.logs import LogWriter
from moorage.drivers.exec.native import linux, protocol
from moorage.drivers.exec.native.monitor import TERMINATING, Monitor, _handles, _send

from . import files as config
from . import liblxc

START_TIMEOUT = 30.0
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000


def _setns(pid: int, kind: str, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, nstype) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {kind}: {os.strerror(err)}")
    finally:
        os.close(fd)


def prepare_namespaces(pid: int, isolate_network: bool, domainname: str) -> str:
    """Bring ``lo`` up and set the domain name inside the container (a forked helper joins its
    namespaces, as LXC has no setting for either); returns an error message or ""."""
    if not isolate_network and not domainname:
        return ""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        try:
            if isolate_network:
                _setns(pid, "net", CLONE_NEWNET)
                linux.loopback_up()
            if domainname:
                _setns(pid, "uts", CLONE_NEWUTS)
                linux.setdomainname(domainname)
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


def make_working_dir(rootfs: str, working_dir: str) -> None:
    """Create the working directory as root, resolving symlinks inside the rootfs (a forked
    helper chroots), before LXC switches to the container's user; RuntimeError if impossible."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        try:
            os.chroot(rootfs)
            os.chdir("/")
            os.makedirs(working_dir, mode=0o755, exist_ok=True)
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
    if message:
        raise RuntimeError(f"cannot create the working directory {working_dir}: {message.decode(errors='replace')}")


def _launch(request: dict[str, Any], stdio: tuple[int, int, int], tty: bool, report_fd: int) -> None:
    """The launcher's life (never returns): LXC's monitor for the container."""
    try:
        os.setsid()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
        if tty:
            import fcntl
            import termios

            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        os.dup2(report_fd, 3)
        os.closerange(4, 1 << 16)  # the monitor's sockets and log must not live on in LXC's processes
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)  # an ignored signal would stay ignored in the container
        lib = liblxc.load()
        status = liblxc.run_foreground(lib, request["name"], request["lxcpath"], request["config"], request["argv"],
                                         [tuple(item) for item in request["options"]])
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
    def __init__(self, request: dict[str, Any], chan: socket.socket) -> None:
        super().__init__(request, chan)
        self.init_pid = 0
        self.report_r = -1
        self.pidfd = -1

    def start(self) -> None:
        request = self.request
        address, dirfd = protocol.socket_address(self.exec_dir)
        try:
            try:
                os.unlink(self.exec_dir / protocol.SOCKET_NAME)
            except FileNotFoundError:
                pass
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.listener.bind(address)
        finally:
            os.close(dirfd)
        os.chmod(self.exec_dir / protocol.SOCKET_NAME, 0o600)
        self.listener.listen(64)
        self.log = LogWriter(Path(request["log_path"]))
        if self.tty:
            self.master, slave = os.openpty()
            stdio = (slave, slave, slave)
            child_fds = [slave]
            self.tty_stdin = bool(request["open_stdin"])
            self.outputs[self.master] = "stdout"
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if request["open_stdin"]:
                in_r, self.stdin_fd = os.pipe()
            else:
                in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            stdio = (in_r, out_w, err_w)
            child_fds = [in_r, out_w, err_w]
            self.outputs[out_r] = "stdout"
            self.outputs[err_r] = "stderr"
        make_working_dir(request["rootfs"], request["working_dir"])
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
            _launch(request, stdio, self.tty, report_w)
        self.pid = pid
        for fd in (*child_fds, report_w):
            os.close(fd)
        self.pidfd = os.pidfd_open(pid)
        self.init_pid = self._await_hook(fifos[config.START_FIFO])
        problem = prepare_namespaces(self.init_pid, request["isolate_network"], request["domainname"])
        if problem:
            self._abort(fifos[config.GO_FIFO], f"cannot prepare the container's namespaces: {problem}")
        if request["handshake"]:
            _send(self.chan, {"pid": self.init_pid})
            if self.chan.recv(64) != b"go":
                self._abort(fifos[config.GO_FIFO], None)
        os.write(fifos[config.GO_FIFO], b"go\n")
        self._await_exec()
        for fd in fifos.values():
            os.close(fd)
        _send(self.chan, {"pid": self.init_pid, "started": True})
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
        ours = os.stat(f"/proc/{self.pid}/exe")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                exe = os.stat(f"/proc/{self.init_pid}/exe")
            except OSError:  # init is gone already: started, unless LXC says it failed
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

    def _fail(self, message: str | None) -> None:  # type: ignore[override]
        try:
            os.kill(self.pid, signal.SIGKILL if message else 0)
        except ProcessLookupError:
            pass
        if self.init_pid:
            try:
                os.kill(self.init_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.waitpid(self.pid, 0)
        self._cleanup_socket()
        detail = self._lxc_errors() or self._report()
        text = message or "LXC could not start the container"
        _send(self.chan, {"error": f"{text}: {detail}" if detail else text})
        os._exit(0)

    def _signal(self, signum: int) -> None:
        """As the native monitor, but the container's pid 1 is the launcher's grandchild."""
        if signum in TERMINATING and not _handles(self.init_pid, signum):
            self.forced_signal = signum
            signum = signal.SIGKILL
        os.kill(self.init_pid, signum)


def main(request: dict[str, Any], chan_fd: int) -> None:
    """The monitor process's whole life (forked by the zygote, in a session of its own)."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote ignores it; this process waits for its child
    chan = socket.socket(fileno=chan_fd)
    monitor = LxcMonitor(request, chan)
    try:
        monitor.start()
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which raises DriverError
        try:
            if monitor.pid:
                os.kill(monitor.pid, signal.SIGKILL)
                os.waitpid(monitor.pid, 0)
            monitor._cleanup_socket()
            _send(chan, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            os._exit(1)
    monitor.run()
