"""The ``lxc`` exec driver: each container is run by liblxc (LXC 5) from a generated config file.

The daemon-side half talks to the container's monitor over the native driver's protocol
(``monitor.sock``), so waiting, signals, attach, resize and restore behave as for ``native``;
see docs/lxc.md for the process tree and the files the driver keeps.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from moorage.core.errors import DriverError, Impossible, InvalidParameter, NotFound, NotSupported
from moorage.core.hookspecs.exec import ProcessSpec
from moorage.core.store import ensure_dir
from moorage.drivers.exec.native import protocol
from moorage.drivers.exec.native.cgroups import validate
from moorage.drivers.exec.native.driver import STATE_FILE, NativeDriver, _Container
from moorage.drivers.exec.native.monitor import EXIT_FILE, replace_file
from moorage.drivers.exec.native.users import resolve

from . import config, liblxc

CGROUP_ROOT = Path("/sys/fs/cgroup")
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
START_TIMEOUT = 30.0
PT_INTERP = 3


def static_elf(path: Path) -> bool:
    """Whether ``path`` is an ELF executable without a program interpreter (statically linked)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit only
                return False
            phoff, = struct.unpack_from("<Q", head, 32)
            phentsize, phnum = struct.unpack_from("<HH", head, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != PT_INTERP for i in range(phnum))


def find_busybox() -> Path | None:
    for candidate in BUSYBOX_CANDIDATES:
        if static_elf(Path(candidate)):
            return Path(candidate)
    return None


class LxcDriver(NativeDriver):
    """Runs each container with liblxc under a monitor process of its own (see ``monitor``).

    ``start`` (its zygote and start handshake), ``processes``, ``release`` and ``cleanup`` are
    this driver's; ``wait``, ``signal``, ``attach``, ``resize`` and ``restore`` are inherited from
    ``NativeDriver``: they speak to the monitor, whose protocol both drivers share.
    """

    name = "lxc"
    priority = 20

    def __init__(self, home, options, context=None) -> None:
        super(NativeDriver, self).__init__(home, options, context)  # not NativeDriver's probes: its own
        if os.geteuid() != 0:
            raise NotSupported("the lxc exec driver must run as root")
        try:
            self._lib = liblxc.load()
        except OSError as exc:
            raise NotSupported(f"liblxc is not installed (Debian package lxc): {exc}") from None
        busybox = find_busybox()
        if busybox is None:
            raise NotSupported("the lxc driver needs a static busybox as the containers' init "
                               "(Debian package busybox-static)")
        self.busybox = busybox
        self.lxcpath = self.home / "containers"  # LXC's lxcpath, created at the first start
        self._lock = threading.Lock()
        self._zygote: subprocess.Popen | None = None
        self._control: socket.socket | None = None
        self._containers: dict[str, _Container] = {}

    # -- the zygote (see ``zygote``) -----------------------------------------------------------------

    def _spawn_zygote(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            fd = theirs.fileno()
            self._zygote = subprocess.Popen([sys.executable, "-m", "moorage.drivers.exec.lxc.zygote", str(fd)],
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
                        raise DriverError("the lxc driver's zygote does not accept requests") from None
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

    def cleanup(self) -> None:
        with self._lock:
            self._close_zygote()

    def _get(self, container_id: str) -> _Container:
        try:
            return self._containers[container_id]
        except KeyError:
            raise NotFound(f"the lxc exec driver does not know container {container_id}") from None

    # -- start ----------------------------------------------------------------------------------

    def _check_options(self, spec: ProcessSpec) -> None:
        """Refuse what would break the config file's syntax; liblxc judges the rest (see ``liblxc``)."""
        for key, value in spec.driver_options:
            if not key.strip() or any(c.isspace() for c in key.strip()) or "\n" in value:
                raise DriverError(f"LxcConf entry {key!r} = {value!r} is not a valid LXC config line")

    def start(self, spec: ProcessSpec, on_namespace: Callable[[int], None] | None = None) -> int:
        cid = spec.container_id
        known = self._containers.get(cid)
        if known is not None and self._running(known):
            raise Impossible(f"container {cid} is already running")
        if not spec.args:
            raise InvalidParameter("No command specified")
        validate(spec.resources)
        self._check_options(spec)
        identity = resolve(Path(spec.rootfs), spec.user)
        for m in spec.mounts:
            if not Path(m.source).exists():
                raise InvalidParameter(f"Invalid bind mount '{m.source}:{m.destination}': source doesn't exist")
            if not m.destination.startswith("/") or m.destination.rstrip("/") == "":
                raise InvalidParameter(f"Illegal bind destination: {m.destination}")
        exec_dir = ensure_dir(Path(spec.state_dir) / "exec")
        ensure_dir(self.lxcpath)
        for name in (EXIT_FILE, STATE_FILE, protocol.SOCKET_NAME, config.LOG):
            try:
                (exec_dir / name).unlink()
            except FileNotFoundError:
                pass
        text = config.render(spec, exec_dir, self.busybox, identity.uid, identity.gid, identity.groups)
        replace_file(exec_dir / config.CONFIG, text.encode())
        replace_file(exec_dir / config.HOOK, config.hook_script(exec_dir).encode())
        request = {
            "exec_dir": str(exec_dir), "log_path": str(spec.log_path), "tty": spec.tty,
            "open_stdin": spec.open_stdin, "name": cid, "lxcpath": str(self.lxcpath),
            "config": str(exec_dir / config.CONFIG), "argv": config.init_argv(spec),
            "isolate_network": spec.isolate_network, "domainname": spec.domainname,
            "options": [[k.strip(), v.strip()] for k, v in spec.driver_options],
            "handshake": on_namespace is not None and spec.isolate_network,
            "rootfs": os.path.realpath(spec.rootfs), "working_dir": spec.working_dir or "/",
        }
        chan, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with theirs:
                self._fork_monitor(request, theirs)
            chan.settimeout(START_TIMEOUT + 5)
            pid = self._handshake(chan, cid, on_namespace)
        except BaseException:
            chan.close()
            self._remove_cgroups(cid)
            raise
        chan.close()
        replace_file(exec_dir / STATE_FILE, json.dumps({"pid": pid}).encode())
        self._containers[cid] = _Container(exec_dir, pid, spec.tty, spec.open_stdin)
        return pid

    def _handshake(self, chan: socket.socket, cid: str, on_namespace: Callable[[int], None] | None) -> int:
        """The start channel (see ``monitor``): the init's pid, the network driver's turn, started."""
        def receive() -> dict:
            try:
                raw = chan.recv(65536)
            except TimeoutError:
                raise DriverError(f"container {cid}: the lxc monitor did not answer within {START_TIMEOUT:.0f} s") \
                    from None
            if not raw:
                raise DriverError(f"container {cid}: the lxc monitor died during start")
            message = json.loads(raw)
            if "error" in message:
                _drain(chan)
                raise DriverError(f"cannot start container {cid}: {message['error']}")
            return message

        message = receive()
        if "started" not in message:
            assert on_namespace is not None
            try:
                on_namespace(message["pid"])
            except BaseException:
                chan.send(b"abort")
                _drain(chan)
                raise
            chan.send(b"go")
            message = receive()
        return int(message["pid"])

    # -- processes and release ------------------------------------------------------------------

    def _cgroup_dirs(self, container_id: str) -> list[Path]:
        """LXC's cgroups for this container, in every hierarchy (it names them after the container)."""
        found = []
        for top in CGROUP_ROOT.iterdir():
            for prefix in ("lxc.payload.", "lxc.monitor."):
                path = top / f"{prefix}{container_id}"
                if path.is_dir():
                    found.append(path)
        return found

    def processes(self, container_id: str) -> list[int]:
        c = self._get(container_id)
        pids: list[int] = []
        payload = CGROUP_ROOT / "pids" / f"lxc.payload.{container_id}"
        for dirpath, _, files in os.walk(payload):
            if "cgroup.procs" in files:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids.extend(int(line) for line in f if line.strip())
        if c.pid in pids:
            pids.remove(c.pid)
            pids.insert(0, c.pid)
        return pids

    def _remove_cgroups(self, container_id: str) -> None:
        """Remove what LXC left behind: its payload and monitor cgroups (kill stragglers first)
        and the shared ``lxc.pivot`` cgroup once it is empty."""
        for path in self._cgroup_dirs(container_id):
            for dirpath, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
                _kill_procs(Path(dirpath))
                _rmdir(Path(dirpath))
        for top in CGROUP_ROOT.iterdir():
            try:
                (top / "lxc.pivot").rmdir()
            except OSError:
                pass  # missing, or in use by another LXC container right now

    def release(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        if c is not None and self._running(c):
            self._request(c, protocol.SIGNAL, str(9).encode())
            self.wait_gone(c)
        self._remove_cgroups(container_id)
        shutil.rmtree(self.lxcpath / container_id, ignore_errors=True)


def _drain(chan: socket.socket) -> None:
    """Read the start channel until the monitor closes it: it has cleaned up by then."""
    try:
        while chan.recv(65536):
            pass
    except OSError:
        pass


def _kill_procs(cgroup: Path) -> None:
    for _ in range(100):
        try:
            with open(cgroup / "cgroup.procs") as f:
                pids = [int(line) for line in f if line.strip()]
        except FileNotFoundError:
            return
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        time.sleep(0.01)


def _rmdir(path: Path) -> None:
    for _ in range(200):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise DriverError(f"cannot remove cgroup {path}: {exc}") from exc
            time.sleep(0.01)
    raise DriverError(f"cgroup {path} is still busy")
