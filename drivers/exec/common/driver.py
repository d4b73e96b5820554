"""The daemon side shared by the exec drivers that run each container under a monitor process.

``MonitorDriver`` keeps the driver's zygote (``zygote``), runs the start handshake with a new
monitor and implements ``wait``, ``signal``, ``attach``, ``resize`` and ``restore`` by talking to
the monitor over ``protocol``. A driver supplies ``zygote_module`` (its zygote, which forks its
monitor), the start request (``start``, with ``_prepare`` and ``_launch``), ``processes`` and
``release``.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from moorage.core.sdk.driver import DriverContext, FamilySettings, NoOptions
from moorage.core.sdk.errors import DriverError, InvalidParameter, NotFound, StateError
from moorage.core.sdk.hookspecs.exec import Attachment, ExecDriver, ProcessSpec, Stream
from moorage.core.sdk.store import ensure_dir, read_json
from moorage.drivers.exec.common import protocol
from moorage.drivers.exec.common.monitor import EXIT_FILE, STATE_FILE
from moorage.drivers.exec.common.policy import memory_limits, validate, validate_mounts
from moorage.drivers.exec.common.requests import MonitorRequest
from moorage.drivers.exec.common.users import Identity, resolve

START_TIMEOUT = 30.0


@dataclass
class MonitoredContainer:
    exec_dir: Path
    pid: int
    tty: bool
    open_stdin: bool
    status: int | None = None


class MonitorAttachment(Attachment):
    """An attach connection to the container's monitor (see ``protocol``)."""

    def __init__(self, sock: socket.socket, open_stdin: bool) -> None:
        self._sock = sock
        self._open_stdin = open_stdin
        self._closed = False

    def read(self) -> tuple[Stream, bytes] | None:
        while not self._closed:
            try:
                frame = protocol.recv_frame(self._sock)
            except OSError:
                frame = None
            if frame is None or frame[0] == protocol.EXIT:
                self._closed = True
                break
            kind, payload = frame
            if kind in (protocol.STDOUT, protocol.STDERR):
                return Stream(kind), payload
        self._sock.close()
        return None

    def write(self, data: bytes) -> None:
        if not self._open_stdin:
            raise StateError("the container's stdin is not open (OpenStdin is false)")
        try:
            for i in range(0, len(data), 65536):
                self._sock.sendall(protocol.frame(protocol.STDIN, data[i:i + 65536]))
        except OSError as exc:
            raise StateError(f"the container's stdin is closed: {exc}") from None

    def close_stdin(self) -> None:
        try:
            self._sock.sendall(protocol.frame(protocol.CLOSE_STDIN))
        except OSError:
            pass

    def close(self) -> None:
        self._closed = True
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class MonitorDriver(ExecDriver):
    """An exec driver whose containers each run under a monitor forked by the driver's zygote.

    Subclasses set ``name``, ``priority`` and ``zygote_module`` (run as ``python -m`` with the
    control socket's fd), probe the host in ``__init__`` after calling this one, and implement
    ``start`` (``_prepare``, then a request for their monitor, then ``_launch``), ``processes``
    and ``release``.
    """

    zygote_module: ClassVar[str]
    #: How long the driver waits for each message of the start handshake.
    start_timeout: ClassVar[float] = START_TIMEOUT

    def __init__(self, context: DriverContext[NoOptions, FamilySettings]) -> None:
        super().__init__(context)
        self._lock = threading.Lock()
        self._zygote: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._containers: dict[str, MonitoredContainer] = {}

    # -- the zygote ---------------------------------------------------------------------------

    def _spawn_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            fd = theirs.fileno()
            self._zygote = subprocess.Popen([sys.executable, "-m", self.zygote_module, str(fd)],
                                            pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self._control = ours

    def _fork_monitor(self, request: MonitorRequest, chan: socket.socket) -> None:
        payload = request.to_json()
        with self._lock:
            for attempt in (1, 2):
                if self._control is None or self._zygote is None or self._zygote.poll() is not None:
                    self._close_zygote()
                    self._spawn_zygote()
                assert self._control is not None
                try:
                    socket.send_fds(self._control, [payload], [chan.fileno()])
                    return
                except OSError:
                    if attempt == 2:
                        raise DriverError(f"the {self.name} driver's zygote does not accept requests") from None
                    self._close_zygote()

    def _close_zygote(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._zygote is not None:
            try:
                self._zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._zygote.kill()
                self._zygote.wait()
            self._zygote = None

    def memory_limits(self) -> tuple[bool, bool]:
        return memory_limits()

    def cleanup(self) -> None:
        with self._lock:
            self._close_zygote()

    # -- start ----------------------------------------------------------------------------------

    def _get(self, container_id: str) -> MonitoredContainer:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFound(f"the {self.name} exec driver does not know container {container_id}") from None

    def _check_options(self, spec: ProcessSpec) -> None:
        """Refuse ``spec.driver_options`` this driver cannot use (by default: none are checked)."""

    def _prepare(self, spec: ProcessSpec, stale: tuple[str, ...] = ()) -> tuple[Identity, Path]:
        """The checks every start makes, then the exec dir with the files of a previous run (and
        the driver's ``stale`` ones) removed; returns the command's identity and the exec dir."""
        cid = spec.container_id
        known = self._containers.get(cid)
        if known is not None and self._running(known):
            raise StateError(f"container {cid} is already running")
        if not spec.args:
            raise InvalidParameter("No command specified")
        validate(spec.resources)
        self._check_options(spec)
        identity = resolve(Path(spec.rootfs), spec.user)
        validate_mounts(spec.mounts)
        exec_dir = ensure_dir(Path(spec.state_dir) / "exec")
        for name in (EXIT_FILE, STATE_FILE, protocol.SOCKET_NAME, *stale):
            try:
                (exec_dir / name).unlink()
            except FileNotFoundError:
                pass
        return identity, exec_dir

    def _launch(self, spec: ProcessSpec, exec_dir: Path, start: object,
                on_namespace: Callable[[int], None] | None, undo: Callable[[], None]) -> int:
        """Fork a monitor for ``spec`` and the driver's own ``start`` (see ``requests``) and run
        the start handshake; returns the container's pid 1. On any failure ``undo`` removes what
        the driver set up, and the error is raised."""
        cid = spec.container_id
        request = MonitorRequest(
            exec_dir=str(exec_dir), log_path=str(spec.log_path),
            log_rotation=(spec.log_rotation.max_size, spec.log_rotation.max_files), tty=spec.tty,
            open_stdin=spec.open_stdin, handshake=on_namespace is not None and spec.isolate_network, start=start)
        chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with theirs:
                self._fork_monitor(request, theirs)
            chan.settimeout(self.start_timeout)
            pid = self._handshake(chan, cid, on_namespace)
        except BaseException:
            chan.close()
            undo()
            raise
        chan.close()
        self._containers[cid] = MonitoredContainer(exec_dir, pid, spec.tty, spec.open_stdin)
        return pid

    def _handshake(self, chan: socket.socket, cid: str, on_namespace: Callable[[int], None] | None) -> int:
        """The start channel (see ``monitor``): the pid, the network driver's turn, started."""
        def receive() -> dict:
            try:
                raw = chan.recv(65536)
            except TimeoutError:
                raise DriverError(f"container {cid}: the {self.name} monitor did not answer within "
                                  f"{self.start_timeout:.0f} s") from None
            if not raw:
                raise DriverError(f"container {cid}: the {self.name} monitor died during start")
            message = json.loads(raw)
            if "error" in message:
                _drain(chan)
                raise DriverError(f"cannot start container {cid}: {message['error']}")
            return message

        message = receive()
        if "started" not in message:  # the network driver's turn was asked for
            assert on_namespace is not None
            try:
                on_namespace(message["pid"])
            except BaseException as exc:
                # the process may have failed its setup meanwhile (the turn can run beside it),
                # which then explains the failure better: a join into a namespace that is gone
                with contextlib.suppress(OSError):
                    chan.send(b"abort")
                reported = _drain(chan)
                if reported is not None and isinstance(exc, Exception):
                    raise DriverError(f"cannot start container {cid}: {reported}") from exc
                raise
            # a monitor that failed meanwhile has already sent its error, which receive raises
            with contextlib.suppress(OSError):
                chan.send(b"go")
            message = receive()
        return int(message["pid"])

    # -- talking to the monitor -----------------------------------------------------------------

    def _running(self, c: MonitoredContainer) -> bool:
        try:
            protocol.connect(c.exec_dir).close()
            return True
        except OSError:
            return False

    def _recorded(self, c: MonitoredContainer) -> int | None:
        if c.status is None:
            recorded = read_json(c.exec_dir / EXIT_FILE)
            if recorded is not None:
                c.status = int(recorded["status"])
        return c.status

    def wait(self, container_id: str, timeout: float | None = None) -> int | None:
        c = self._get(container_id)
        if c.status is not None:
            return c.status
        try:
            sock = protocol.connect(c.exec_dir)
        except OSError:
            return self._recorded(c)
        with sock:
            if timeout is not None and timeout <= 0:
                return None  # the monitor is there: still running
            sock.settimeout(timeout)
            try:
                sock.sendall(protocol.frame(protocol.WAIT))
                frame = protocol.recv_frame(sock)
            except TimeoutError:
                return None
            except OSError:
                frame = None
        if frame is not None and frame[0] == protocol.EXIT:
            c.status = int(frame[1])
            return c.status
        return self._recorded(c)

    def _request(self, c: MonitoredContainer, kind: int, payload: bytes = b"") -> tuple[int, bytes] | None:
        """One request to the monitor; None if the monitor is gone (the process exited)."""
        try:
            sock = protocol.connect(c.exec_dir)
        except OSError:
            return None
        with sock:
            try:
                sock.sendall(protocol.frame(kind, payload))
                return protocol.recv_frame(sock)
            except OSError:
                return None

    def signal(self, container_id: str, signum: int) -> None:
        self._request(self._get(container_id), protocol.SIGNAL, str(int(signum)).encode())

    def _pid_first(self, container_id: str, pids: list[int]) -> list[int]:
        """``pids`` with the container's pid 1 first (``processes``' order); ``NotFound`` for an
        unknown container."""
        c = self._get(container_id)
        if c.pid in pids:
            pids.remove(c.pid)
            pids.insert(0, c.pid)
        return pids

    def attach(self, container_id: str, replay: bool = False) -> Attachment:
        c = self._get(container_id)
        try:
            sock = protocol.connect(c.exec_dir)
        except OSError:
            raise StateError(f"container {container_id} is not running") from None
        try:
            sock.sendall(protocol.frame(protocol.ATTACH, protocol.REPLAY if replay else b""))
            frame = protocol.recv_frame(sock)
        except OSError:
            frame = None
        if frame is None or frame[0] != protocol.ACK:
            sock.close()
            raise StateError(f"container {container_id} is not running")
        return MonitorAttachment(sock, c.open_stdin)

    def resize(self, container_id: str, height: int, width: int) -> None:
        c = self._get(container_id)
        if not c.tty:
            raise StateError(f"container {container_id} has no tty to resize")
        if not (0 < height < 65536 and 0 < width < 65536):
            raise InvalidParameter(f"invalid tty size {height}x{width}")
        answer = self._request(c, protocol.RESIZE, height.to_bytes(2, "big") + width.to_bytes(2, "big"))
        if answer is None:
            raise StateError(f"container {container_id} is not running")
        if answer[0] == protocol.ERROR:
            raise DriverError(f"cannot resize the tty of container {container_id}: {answer[1].decode()}")

    def restore(self, spec: ProcessSpec) -> bool:
        exec_dir = Path(spec.state_dir) / "exec"
        state = read_json(exec_dir / STATE_FILE) or {}
        c = MonitoredContainer(exec_dir, int(state.get("pid", 0)), spec.tty, spec.open_stdin)
        self._containers[spec.container_id] = c
        if self._running(c):
            return True
        self._recorded(c)
        return False

    def wait_gone(self, c: MonitoredContainer, timeout: float = 10.0) -> None:
        """After a kill: let the monitor record the exit and go."""
        try:
            sock = protocol.connect(c.exec_dir)
        except OSError:
            return
        with sock:
            sock.settimeout(timeout)
            try:
                sock.sendall(protocol.frame(protocol.WAIT))
                protocol.recv_frame(sock)
            except OSError:
                pass


def _drain(chan: socket.socket) -> str | None:
    """Read the start channel until the monitor closes it: it has cleaned up by then. The
    error it reported on the way, if any."""
    reported = None
    try:
        while raw := chan.recv(65536):
            with contextlib.suppress(ValueError):
                message = json.loads(raw)
                if isinstance(message, dict) and "error" in message and reported is None:
                    reported = str(message["error"])
    except OSError:
        pass
    return reported
