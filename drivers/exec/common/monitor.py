"""The per-container monitor: a small process outside the daemon that owns a container's stdio.

Forked by a driver's zygote (``zygote``) in a session of its own, so it survives the daemon
being killed. It holds the container's pipes or pty master, appends output lines to the JSON
log (``core/sdk/logs.py``: long lines split, files rotated, so its memory and the log's size stay
bounded whatever the container writes), serves attach, wait and signal requests on ``<exec dir>/monitor.sock``
(``protocol``), records the exit status atomically in ``<exec dir>/exit.json`` and exits once
the process is gone and every client was told.

How the container's first process comes to be is each driver's ``Monitor.spawn``. The start
handshake with the driver runs on ``chan`` (a SOCK_SEQPACKET socket, one JSON document per
message). With ``request.handshake`` (a network namespace the network driver must configure
first) ``spawn`` sends ``{"pid": n}`` once the namespaces exist and the driver answers ``go`` or
``abort``; without it the command runs at once. Then ``spawn`` confirms
``{"pid": n, "started": true}`` once the command was executed, or sends ``{"error": "..."}``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import termios
import time
from pathlib import Path
from typing import Any

from moorage.core.sdk import store
from moorage.core.sdk.logs import LogRotation, LogWriter
from moorage.drivers.exec.common import protocol
from moorage.drivers.exec.common.clients import Client, Clients
from moorage.drivers.exec.common.requests import MonitorRequest

#: Output kept from the start of a run for attachments that ask for it (``attach(replay=True)``:
#: clients that attached before the container started); beyond this, it is no longer kept.
REPLAY_LIMIT = 1 << 20
EXIT_FILE = "exit.json"
STATE_FILE = "state.json"


def replace_file(path: Path, data: bytes) -> None:
    """Replace an exec driver's private file (mode 0600) atomically, without fsync
    (``core.store.replace_file``): these files describe processes, which do not survive a host
    crash anyway; a killed daemon or monitor leaves the old or the new content, never a torn
    file, and skipping the two fsyncs saves milliseconds on every container start and exit."""
    store.replace_file(path, data, 0o600)


#: Signals whose default action terminates the process.
TERMINATING = frozenset({
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGILL, signal.SIGTRAP, signal.SIGABRT, signal.SIGBUS,
    signal.SIGFPE, signal.SIGUSR1, signal.SIGSEGV, signal.SIGUSR2, signal.SIGPIPE, signal.SIGALRM, signal.SIGTERM,
    signal.SIGSTKFLT, signal.SIGXCPU, signal.SIGXFSZ, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO, signal.SIGPWR,
    signal.SIGSYS, *range(signal.SIGRTMIN, signal.SIGRTMAX + 1),
})


def handles(pid: int, signum: int) -> bool:
    """Whether ``pid`` catches or ignores ``signum`` (from /proc/<pid>/status)."""
    mask = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("SigCgt:", "SigIgn:")):
                mask |= int(line.split()[1], 16)
    return bool(mask & (1 << (signum - 1)))


def remove_cgroups(procs_files: list[str]) -> None:
    for procs in procs_files:
        directory = os.path.dirname(procs)
        for _ in range(100):
            try:
                os.rmdir(directory)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)  # the killed process is still being torn down


def send(chan: socket.socket, obj: dict[str, Any]) -> None:
    chan.send(json.dumps(obj).encode())


def exit_status(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def warm_up() -> None:
    """Run, once, the library code a start runs first (json, pathlib, selectors, pipes,
    sockets), in a spare monitor before its request arrives. A forked spare shares the zygote's
    pages until it writes to them, and running code writes to them (reference counts, the
    interpreter's inline caches): copied here, those pages are off the start's critical path
    (1-1.5 ms of a start on the project VM)."""
    json.loads(json.dumps({"exec_dir": "/", "tty": False, "cfg": {"args": ["true"], "mounts": [["/", "/", True]]}}))
    Path("/").joinpath("exec", protocol.SOCKET_NAME).exists()
    r, w = os.pipe()
    with selectors.DefaultSelector() as sel:
        sel.register(r, selectors.EVENT_READ, "warm-up")
        sel.select(0)
        sel.unregister(r)
    os.close(r)
    os.close(w)
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC).close()


def enter_session(stdio: tuple[int, int, int], tty: bool, default_signals: tuple[int, ...]) -> None:
    """In the child ``spawn`` forks: a session of its own with ``stdio`` on fds 0-2 (the pty as
    its controlling terminal with ``tty``), and ``default_signals`` and every ignored signal
    back to their default action (a signal ignored here stays ignored across exec, in the
    container: a daemon started by ``nohup`` made its containers ignore SIGHUP)."""
    os.setsid()
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    if tty:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            if sig in default_signals or signal.getsignal(sig) == signal.SIG_IGN:
                signal.signal(sig, signal.SIG_DFL)
        except (OSError, ValueError):  # a real-time signal Python does not manage
            continue


class Monitor:
    def __init__(self, request: MonitorRequest, chan: socket.socket) -> None:
        self.request = request
        self.chan = chan
        self.exec_dir = Path(request.exec_dir)
        self.tty = request.tty
        self.sel = selectors.DefaultSelector()
        self.clients = Clients(self.sel)
        self.outputs: dict[int, str] = {}  # fd -> stream name
        self.stdin_fd = -1
        self.stdin_pending = bytearray()
        self.stdin_close_requested = False
        self.master = -1
        self.tty_stdin = False
        self.pid = 0
        self.init_pid = 0
        self.status: int | None = None
        self.forced_signal = 0
        self.log: LogWriter | None = None
        self.replay: bytearray | None = bytearray()

    # -- start -------------------------------------------------------------------------------

    def start(self) -> None:
        request = self.request
        address, dirfd = protocol.socket_address(self.exec_dir)
        try:
            self._cleanup_socket()
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.listener.bind(address)
        finally:
            os.close(dirfd)
        os.chmod(self.exec_dir / protocol.SOCKET_NAME, 0o600)
        self.listener.listen(64)
        self.log = LogWriter(Path(request.log_path), LogRotation(*request.log_rotation))
        if self.tty:
            stdio, child_fds = self.tty_stdio()
            self.tty_stdin = request.open_stdin
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if request.open_stdin:
                in_r, self.stdin_fd = os.pipe()
            else:
                in_r = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
            stdio = (in_r, out_w, err_w)
            child_fds = [in_r, out_w, err_w]
            self.outputs[out_r] = "stdout"
            self.outputs[err_r] = "stderr"
        self.spawn(stdio, child_fds)
        if self.tty:
            self.outputs[self.master] = "stdout"

    def tty_stdio(self) -> tuple[tuple[int, int, int], list[int]]:
        """With a tty: the first process's stdio and the monitor's copies of them (as ``spawn``
        takes them); ``self.master`` is set here or, at the latest, by ``spawn``. By default a
        pty of the monitor's, of the devpts it sees."""
        self.master, slave = os.openpty()
        return (slave, slave, slave), [slave]

    def spawn(self, stdio: tuple[int, int, int], child_fds: list[int]) -> None:
        """Start the container's first process with ``stdio`` (stdin, stdout, stderr), run the
        start handshake on ``self.chan`` (see the module) and close it; ``child_fds`` are the
        monitor's copies of the child's ends, to close once the child has them.

        Sets ``self.pid`` (the child this monitor waits for: its exit is the container's) and
        ``self.init_pid`` (the container's pid 1, which signals go to). On failure it reports
        ``{"error": ...}`` and ends the process (``_fail``).
        """
        raise NotImplementedError

    def _fail(self, message: str | None) -> None:
        """A start failed: stop the child, report ``{"error": ...}`` to the driver and exit."""
        self._stop_child(message is not None)
        os.waitpid(self.pid, 0)
        self._cleanup_socket()
        send(self.chan, {"error": self._explain(message)})
        os._exit(0)

    def _stop_child(self, kill: bool) -> None:
        """Kill the started child (without ``kill`` it is known to be exiting already)."""
        try:
            os.kill(self.pid, signal.SIGKILL if kill else 0)
        except ProcessLookupError:
            pass

    def _explain(self, message: str | None) -> str:
        """The error reported for a failed start (``message`` None: the child just exited)."""
        return message if message is not None else "the container process died during setup"

    def _cleanup_socket(self) -> None:
        try:
            os.unlink(self.exec_dir / protocol.SOCKET_NAME)
        except FileNotFoundError:
            pass

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        for fd in self.outputs:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, "output")
        if self.stdin_fd >= 0 and not self.tty:
            os.set_blocking(self.stdin_fd, False)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        pidfd = os.pidfd_open(self.pid)
        self.sel.register(pidfd, selectors.EVENT_READ, "exit")
        while self.outputs or self.status is None:
            for key, events in self.sel.select():
                kind = key.data
                if kind == "output":
                    self._on_output(key.fd)
                elif kind == "listen":
                    self.clients.accept(self.listener)
                elif kind == "exit":
                    _, wait_status = os.waitpid(self.pid, 0)
                    self.status = exit_status(wait_status)
                    if self.forced_signal and self.status == 128 + signal.SIGKILL:
                        self.status = 128 + self.forced_signal
                    self.sel.unregister(pidfd)
                    os.close(pidfd)
                elif kind == "stdin":
                    self._flush_stdin()
                else:
                    try:
                        self._on_client(key.data, events)
                    except Exception:  # noqa: BLE001 - a bad client must not take the container's monitor down
                        self.clients.drop(key.data)
        self._finish()

    def _on_output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the last holder of the pty slave is gone
                raise
            data = b""
        if not data:
            self.sel.unregister(fd)
            del self.outputs[fd]
            os.close(fd)
            if fd == self.master:
                self.master = -1
            return
        stream = self.outputs[fd]
        assert self.log is not None
        self.log.write(stream, data)
        kind = protocol.STDOUT if stream == "stdout" else protocol.STDERR
        out = protocol.frame(kind, data)
        if self.replay is not None:
            self.replay += out
            if len(self.replay) > REPLAY_LIMIT:
                self.replay = None
        for client in self.clients:
            if client.attached:
                self.clients.queue(client, out)

    def _on_client(self, client: Client, events: int) -> None:
        for kind, payload in self.clients.receive(client, events):
            self._on_frame(client, kind, payload)

    def _on_frame(self, client: Client, kind: int, payload: bytes) -> None:
        if kind == protocol.WAIT:
            client.waiting = True
            if self.status is not None and not self.outputs:
                self.clients.queue(client, protocol.frame(protocol.EXIT, str(self.status).encode()))
        elif kind == protocol.ATTACH:
            client.attached = True
            client.waiting = True
            self.clients.queue(client, protocol.frame(protocol.ACK))
            if payload == protocol.REPLAY and self.replay:
                self.clients.queue(client, bytes(self.replay))
        elif kind == protocol.STDIN:
            if not (self.tty_stdin if self.tty else self.stdin_fd >= 0) or self.stdin_close_requested:
                return
            self.stdin_pending += payload
            self._flush_stdin()
        elif kind == protocol.CLOSE_STDIN:
            self.stdin_close_requested = True
            self._flush_stdin()
        elif kind == protocol.RESIZE:
            if self.master < 0:
                self.clients.queue(client, protocol.frame(protocol.ERROR, b"the container has no tty"))
                return
            height, width = struct.unpack("!HH", payload)
            try:
                fcntl.ioctl(self.master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
            except OSError as exc:
                self.clients.queue(client, protocol.frame(protocol.ERROR, str(exc).encode()))
                return
            self.clients.queue(client, protocol.frame(protocol.ACK))
        elif kind == protocol.SIGNAL:
            if self.status is None:
                try:
                    self._signal(int(payload))
                except (ProcessLookupError, ValueError):
                    pass
            self.clients.queue(client, protocol.frame(protocol.ACK))

    def _signal(self, signum: int) -> None:
        """Signal the container's pid 1 as if it were an ordinary process.

        The kernel drops a signal sent to a namespace's init for which init has no handler,
        so a plain ``sleep`` or shell as pid 1 would never stop on SIGTERM. When the signal's
        default action is to terminate and pid 1 neither catches nor ignores it, the monitor
        does what the default action would do: it kills pid 1 and records ``128 + signum``.
        """
        if signum in TERMINATING and not handles(self.init_pid, signum):
            self.forced_signal = signum
            signum = signal.SIGKILL
        os.kill(self.init_pid, signum)

    def _flush_stdin(self) -> None:
        if self.tty:
            self._flush_pty()
            return
        fd = self.stdin_fd
        if fd < 0:
            self.stdin_pending.clear()
            return
        while self.stdin_pending:
            try:
                n = os.write(fd, self.stdin_pending)
            except BlockingIOError:
                break
            except OSError:  # the container closed its stdin
                self.stdin_pending.clear()
                break
            del self.stdin_pending[:n]
        registered = self.sel.get_map().get(fd) is not None
        if self.stdin_pending and not registered:
            self.sel.register(fd, selectors.EVENT_WRITE, "stdin")
        elif not self.stdin_pending and registered:
            self.sel.unregister(fd)
        if self.stdin_close_requested and not self.stdin_pending:
            os.close(fd)
            self.stdin_fd = -1

    def _flush_pty(self) -> None:
        # The master is also the output fd (non-blocking); what does not fit now is written at
        # the next stdin frame.
        if self.master < 0 or not self.tty_stdin:
            self.stdin_pending.clear()
            return
        while self.stdin_pending:
            try:
                n = os.write(self.master, self.stdin_pending[:4096])
            except BlockingIOError:
                return
            except OSError:
                self.stdin_pending.clear()
                return
            del self.stdin_pending[:n]
        if self.stdin_close_requested:
            try:
                os.write(self.master, b"\x04")  # end of input for a reader in canonical mode
            except OSError:
                pass
            self.tty_stdin = False

    def _finish(self) -> None:
        assert self.log is not None and self.status is not None
        self.log.close()
        replace_file(self.exec_dir / EXIT_FILE, json.dumps({"status": self.status}).encode())
        self._cleanup_socket()
        self.listener.close()
        self.clients.close_all(protocol.frame(protocol.EXIT, str(self.status).encode()))
        os._exit(0)


def main(monitor_class: type[Monitor], request: MonitorRequest, chan_fd: int) -> None:
    """The monitor process's whole life; never returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the zygote ignores it; this process waits for its child
    chan = socket.socket(fileno=chan_fd)
    monitor = monitor_class(request, chan)
    try:
        monitor.start()
    except BaseException as exc:  # noqa: BLE001 - reported to the driver, which raises DriverError
        try:
            if monitor.pid:
                os.kill(monitor.pid, signal.SIGKILL)
                os.waitpid(monitor.pid, 0)
            monitor._cleanup_socket()
            send(chan, {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            os._exit(1)
    monitor.run()
