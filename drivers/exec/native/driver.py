"""The ``native`` exec driver: Linux namespaces, cgroups v1 and capabilities, without LXC."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moorage.core.errors import DriverError, Impossible, InvalidParameter, NotFound, NotSupported
from moorage.core.hookspecs.exec import Attachment, ExecDriver, ProcessSpec, Stream
from moorage.core.store import ensure_dir, read_json

from . import protocol
from .cgroups import Cgroups, probe, validate
from .monitor import EXIT_FILE, STATE_FILE
from .users import resolve

START_TIMEOUT = 30.0
NAMESPACES = ("mnt", "pid", "uts", "ipc", "net")


@dataclass
class _Container:
    exec_dir: Path
    pid: int
    tty: bool
    open_stdin: bool
    status: int | None = None


class NativeAttachment(Attachment):
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
            raise Impossible("the container's stdin is not open (OpenStdin is false)")
        try:
            for i in range(0, len(data), 65536):
                self._sock.sendall(protocol.frame(protocol.STDIN, data[i:i + 65536]))
        except OSError as exc:
            raise Impossible(f"the container's stdin is closed: {exc}") from None

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


class NativeDriver(ExecDriver):
    """Runs each container under a small monitor process forked from a pre-started zygote.

    See docs/exec-drivers.md for the process tree, the files under ``<state_dir>/exec`` and
    where the start time goes.
    """

    name = "native"
    priority = 10

    def __init__(self, home, options, context=None) -> None:
        super().__init__(home, options, context)
        if os.geteuid() != 0:
            raise NotSupported("the native exec driver must run as root")
        for ns in NAMESPACES:
            if not os.path.exists(f"/proc/self/ns/{ns}"):
                raise NotSupported(f"this kernel has no {ns} namespaces")
        probe()
        self._lock = threading.Lock()
        self._zygote: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._containers: dict[str, _Container] = {}

    # -- the zygote ---------------------------------------------------------------------------

    def _spawn_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            fd = theirs.fileno()
            self._zygote = subprocess.Popen(
                [sys.executable, "-m", "moorage.drivers.exec.native.zygote", str(fd)],
                pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self._control = ours

    def _fork_monitor(self, request: dict, chan: socket.socket) -> None:
        payload = json.dumps(request).encode()
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
                        raise
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

    # -- the contract ---------------------------------------------------------------------------

    def _get(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFound(f"the native exec driver does not know container {container_id}") from None

    def start(self, spec: ProcessSpec, on_namespace: Callable[[int], None] | None = None) -> int:
        cid = spec.container_id
        known = self._containers.get(cid)
        if known is not None and self._running(known):
            raise Impossible(f"container {cid} is already running")
        if not spec.args:
            raise InvalidParameter("No command specified")
        validate(spec.resources)
        identity = resolve(Path(spec.rootfs), spec.user)
        for m in spec.mounts:
            if not Path(m.source).exists():
                raise InvalidParameter(f"Invalid bind mount '{m.source}:{m.destination}': source doesn't exist")
            if not m.destination.startswith("/") or m.destination.rstrip("/") == "":
                raise InvalidParameter(f"Illegal bind destination: {m.destination}")
        exec_dir = ensure_dir(Path(spec.state_dir) / "exec")
        for name in (EXIT_FILE, STATE_FILE, protocol.SOCKET_NAME):
            try:
                (exec_dir / name).unlink()
            except FileNotFoundError:
                pass
        cgroups = Cgroups(cid)
        cgroups.create(spec.resources, spec.privileged)
        request = {
            "exec_dir": str(exec_dir),
            "log_path": str(spec.log_path),
            "tty": spec.tty,
            "open_stdin": spec.open_stdin,
            "handshake": on_namespace is not None and spec.isolate_network,
            "cgroup_files": cgroups.procs_files(),
            "cfg": {
                "rootfs": str(spec.rootfs), "args": list(spec.args), "env": list(spec.env),
                "hostname": spec.hostname, "domainname": spec.domainname, "working_dir": spec.working_dir,
                "privileged": spec.privileged, "isolate_network": spec.isolate_network,
                "mounts": [[str(m.source), m.destination, m.readonly] for m in spec.mounts],
                "uid": identity.uid, "gid": identity.gid, "groups": list(identity.groups),
            },
        }
        chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with theirs:
                self._fork_monitor(request, theirs)
            chan.settimeout(START_TIMEOUT)
            pid = self._handshake(chan, cid, on_namespace, spec.isolate_network)
        except BaseException:
            chan.close()
            cgroups.remove()
            raise
        chan.close()
        self._containers[cid] = _Container(exec_dir, pid, spec.tty, spec.open_stdin)
        return pid

    def _handshake(self, chan: socket.socket, cid: str, on_namespace: Callable[[int], None] | None,
                   isolate_network: bool) -> int:
        def receive() -> dict:
            try:
                raw = chan.recv(65536)
            except TimeoutError:
                raise DriverError(f"container {cid}: the monitor did not answer within {START_TIMEOUT:.0f} s") from None
            if not raw:
                raise DriverError(f"container {cid}: the monitor died during start")
            message = json.loads(raw)
            if "error" in message:
                _drain(chan)
                raise DriverError(f"cannot start container {cid}: {message['error']}")
            return message

        message = receive()
        if "started" in message:  # no handshake was asked for
            return message["pid"]
        pid = message["pid"]
        assert on_namespace is not None and isolate_network
        try:
            on_namespace(pid)
        except BaseException:
            chan.send(b"abort")
            _drain(chan)
            raise
        chan.send(b"go")
        receive()
        return pid

    def _running(self, c: _Container) -> bool:
        try:
            protocol.connect(c.exec_dir).close()
            return True
        except OSError:
            return False

    def _recorded(self, c: _Container) -> int | None:
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

    def _request(self, c: _Container, kind: int, payload: bytes = b"") -> tuple[int, bytes] | None:
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

    def processes(self, container_id: str) -> list[int]:
        c = self._get(container_id)
        pids = Cgroups(container_id).pids()
        if c.pid in pids:
            pids.remove(c.pid)
            pids.insert(0, c.pid)
        return pids

    def attach(self, container_id: str, replay: bool = False) -> Attachment:
        c = self._get(container_id)
        try:
            sock = protocol.connect(c.exec_dir)
        except OSError:
            raise Impossible(f"container {container_id} is not running") from None
        try:
            sock.sendall(protocol.frame(protocol.ATTACH, protocol.REPLAY if replay else b""))
            frame = protocol.recv_frame(sock)
        except OSError:
            frame = None
        if frame is None or frame[0] != protocol.ACK:
            sock.close()
            raise Impossible(f"container {container_id} is not running")
        return NativeAttachment(sock, c.open_stdin)

    def resize(self, container_id: str, height: int, width: int) -> None:
        c = self._get(container_id)
        if not c.tty:
            raise Impossible(f"container {container_id} has no tty to resize")
        if not (0 < height < 65536 and 0 < width < 65536):
            raise InvalidParameter(f"invalid tty size {height}x{width}")
        answer = self._request(c, protocol.RESIZE, height.to_bytes(2, "big") + width.to_bytes(2, "big"))
        if answer is None:
            raise Impossible(f"container {container_id} is not running")
        if answer[0] == protocol.ERROR:
            raise DriverError(f"cannot resize the tty of container {container_id}: {answer[1].decode()}")

    def restore(self, spec: ProcessSpec) -> bool:
        exec_dir = Path(spec.state_dir) / "exec"
        state = read_json(exec_dir / STATE_FILE) or {}
        c = _Container(exec_dir, int(state.get("pid", 0)), spec.tty, spec.open_stdin)
        self._containers[spec.container_id] = c
        if self._running(c):
            return True
        self._recorded(c)
        return False

    def release(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        Cgroups(container_id).remove()  # kills whatever is left, then removes the directories
        if c is not None and self._running(c):
            self.wait_gone(c)

    def wait_gone(self, c: _Container, timeout: float = 10.0) -> None:
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

    def cleanup(self) -> None:
        with self._lock:
            self._close_zygote()


def _drain(chan: socket.socket) -> None:
    """Read the start channel until the monitor closes it: it has cleaned up by then."""
    try:
        while chan.recv(65536):
            pass
    except OSError:
        pass
