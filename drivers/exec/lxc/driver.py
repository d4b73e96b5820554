"""The ``lxc`` exec driver: each container is run by liblxc (LXC 5) from a generated config file.

The daemon-side half talks to the container's monitor over the native driver's protocol
(``monitor.sock``, ``common.driver``), so waiting, signals, attach, resize and restore behave as for ``native``;
see docs/lxc.md for the process tree and the files the driver keeps.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

from moorage.core.sdk.driver import DriverContext, FamilySettings, NoOptions
from moorage.core.sdk.errors import DriverError, NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import ExecProcess, ExecSpec, ProcessSpec, ResourceUsage
from moorage.core.sdk.store import ensure_dir
from moorage.drivers.exec.common import protocol
from moorage.drivers.exec.common.driver import START_TIMEOUT, MonitorDriver
from moorage.drivers.exec.common.monitor import STATE_FILE, replace_file
from moorage.drivers.exec.common.policy import kill_pids, rmdir_cgroup
from moorage.drivers.exec.lxc import config, liblxc
from moorage.drivers.exec.lxc.cgroup_ops import Layout
from moorage.drivers.exec.lxc.docker_exec import exec_in
from moorage.drivers.exec.lxc.monitor import LxcStart

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
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


class LxcDriver(MonitorDriver):
    """Runs each container with liblxc under a monitor process of its own (see ``monitor``).

    ``start``, ``processes`` and ``release`` are this driver's; the zygote, the start handshake,
    ``wait``, ``signal``, ``attach``, ``resize`` and ``restore`` are ``MonitorDriver``'s.
    """

    name = "lxc"
    priority = 20
    zygote_module = "moorage.drivers.exec.lxc.zygote"
    start_timeout = START_TIMEOUT + 5  # the monitor's own start timeout, then its answer

    def __init__(self, context: DriverContext[NoOptions, FamilySettings]) -> None:
        super().__init__(context)
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
        self.layout = Layout.probe()  # where LXC puts the containers' cgroups (v1 or v2)

    # -- start ----------------------------------------------------------------------------------

    def _check_options(self, spec: ProcessSpec) -> None:
        """Refuse what would break the config file's syntax; liblxc judges the rest (see ``liblxc``)."""
        for key, value in spec.driver_options:
            if not key.strip() or any(c.isspace() for c in key.strip()) or "\n" in value:
                raise DriverError(f"LxcConf entry {key!r} = {value!r} is not a valid LXC config line")

    def start(self, spec: ProcessSpec, on_namespace: Callable[[int], None] | None = None) -> int:
        cid = spec.container_id
        identity, exec_dir = self._prepare(spec, stale=(config.LOG,))
        ensure_dir(self.lxcpath)
        text = config.render(spec, exec_dir, self.busybox, identity.uid, identity.gid, identity.groups,
                             v2=self.layout.v2)
        replace_file(exec_dir / config.CONFIG, text.encode())
        replace_file(exec_dir / config.HOOK, config.hook_script(exec_dir).encode())
        seccomp = None if spec.privileged else spec.confinement.seccomp_filter()
        if seccomp is not None:
            replace_file(exec_dir / config.SECCOMP, config.seccomp_profile(seccomp).encode())
        start = LxcStart(
            name=cid, lxcpath=str(self.lxcpath), config=str(exec_dir / config.CONFIG),
            argv=tuple(config.init_argv(spec)), options=tuple((k.strip(), v.strip()) for k, v in spec.driver_options),
            rootfs=os.path.realpath(spec.rootfs), working_dir=spec.working_dir or "/",
            isolate_network=spec.isolate_network, domainname=spec.domainname)
        pid = self._launch(spec, exec_dir, start, on_namespace, lambda: self._remove_cgroups(cid))
        replace_file(exec_dir / STATE_FILE, json.dumps({"pid": pid}).encode())
        return pid

    # -- processes and release ------------------------------------------------------------------

    def pause(self, container_id: str) -> None:
        self._get(container_id)
        self.layout.set_frozen(container_id, True)

    def unpause(self, container_id: str) -> None:
        self._get(container_id)
        self.layout.set_frozen(container_id, False)

    def stats(self, container_id: str) -> ResourceUsage:
        self._get(container_id)
        return self.layout.usage(container_id)

    def exec(self, container_id: str, spec: ExecSpec) -> ExecProcess:
        pids = self.processes(container_id)
        return exec_in(container_id, self.lxcpath, pids[0] if pids else 0, spec)

    def processes(self, container_id: str) -> list[int]:
        pids: list[int] = []
        for dirpath, _, files in os.walk(self.layout.payload(container_id)):
            if "cgroup.procs" in files:
                with open(os.path.join(dirpath, "cgroup.procs")) as f:
                    pids.extend(int(line) for line in f if line.strip())
        return self._pid_first(container_id, pids)

    def _remove_cgroups(self, container_id: str) -> None:
        """Remove what LXC left behind: its payload and monitor cgroups (kill stragglers first)
        and the shared ``lxc.pivot`` cgroup once it is empty."""
        for path in self.layout.directories(container_id):
            for dirpath, _, _ in sorted(os.walk(path), key=lambda entry: -len(entry[0])):
                _kill_procs(Path(dirpath))
                rmdir_cgroup(Path(dirpath), tries=200)
        for pivot in self.layout.pivots():
            try:
                pivot.rmdir()
            except OSError:
                pass  # missing, or in use by another LXC container right now

    def release(self, container_id: str) -> None:
        c = self._containers.pop(container_id, None)
        try:  # a frozen process takes its SIGKILL only once thawed
            self.layout.set_frozen(container_id, False)
        except (StateError, NotSupported, OSError):
            pass  # never started, already gone, or no freezer
        if c is not None and self._running(c):
            self._request(c, protocol.SIGNAL, str(9).encode())
            self.wait_gone(c)
        self._remove_cgroups(container_id)
        shutil.rmtree(self.lxcpath / container_id, ignore_errors=True)


def _kill_procs(cgroup: Path) -> None:
    for _ in range(100):
        try:
            with open(cgroup / "cgroup.procs") as f:
                pids = [int(line) for line in f if line.strip()]
        except FileNotFoundError:
            return
        if not pids:
            return
        kill_pids(pids)
        time.sleep(0.01)
