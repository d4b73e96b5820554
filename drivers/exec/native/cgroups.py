"""cgroups v1 written directly: ``/sys/fs/cgroup/<controller>/moorage/<id>`` per container.

This host's layout is hybrid (v1 controllers plus a unified hierarchy) without systemd, so
nothing else manages these directories: the driver creates them before the container's
process joins them and removes them after the process is gone.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from moorage.core.errors import DriverError, InvalidParameter, NotSupported
from moorage.core.hookspecs.exec import MIN_MEMORY, Resources

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "cpu", "devices", "pids", "freezer")
PARENT = "moorage"

#: Docker 0.6's LXC device whitelist, plus /dev/full (c 1:7).
DEVICE_WHITELIST = (
    "c 1:3 rwm",  # null
    "c 1:5 rwm",  # zero
    "c 1:7 rwm",  # full
    "c 1:8 rwm",  # random
    "c 1:9 rwm",  # urandom
    "c 5:0 rwm",  # tty
    "c 5:1 rwm",  # console
    "c 4:0 rwm",  # tty0
    "c 4:1 rwm",  # tty1
    "c 5:2 rwm",  # ptmx
    "c 136:* rwm",  # pts/*
    "c 10:200 rwm",  # net/tun
)


def probe() -> None:
    """Raise ``NotSupported`` unless every controller is mounted as cgroup v1 here."""
    for controller in CONTROLLERS:
        if not (CGROUP_ROOT / controller / "cgroup.procs").exists():
            raise NotSupported(f"the cgroup v1 controller {controller!r} is not mounted at {CGROUP_ROOT / controller}")


def validate(resources: Resources) -> None:
    if resources.memory < 0:
        raise InvalidParameter("Memory limit must not be negative")
    if 0 < resources.memory < MIN_MEMORY:
        raise InvalidParameter(f"Memory limit must be given in bytes (minimum {MIN_MEMORY} bytes)")
    if resources.memory_swap < -1:
        raise InvalidParameter("MemorySwap must be -1 (unlimited), 0 (twice Memory) or a number of bytes")
    if resources.memory and resources.memory_swap > 0 and resources.memory_swap < resources.memory:
        raise InvalidParameter("MemorySwap must be at least Memory (it counts memory plus swap)")
    if resources.cpu_shares < 0:
        raise InvalidParameter("CpuShares must not be negative")
    if resources.pids < 0:
        raise InvalidParameter("the pids limit must not be negative")


def needed(resources: Resources) -> list[str]:
    """The controllers a container joins: devices, pids (``processes``) and freezer (a reliable
    kill) always; memory and cpu only with a limit or a weight, because every cgroup a process
    is moved into costs an RCU grace period (about a millisecond) at start."""
    return [c for c in CONTROLLERS if (c != "memory" or resources.memory) and (c != "cpu" or resources.cpu_shares)]


class Cgroups:
    """The cgroup directories of one container."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        self.paths = {c: CGROUP_ROOT / c / PARENT / container_id for c in CONTROLLERS}
        self.active: list[str] = []

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files of the controllers ``create`` set up."""
        return [str(self.paths[c] / "cgroup.procs") for c in self.active]

    def exists(self) -> bool:
        return any(p.exists() for p in self.paths.values())

    def create(self, resources: Resources, privileged: bool) -> None:
        """Make the directories and write the limits; on failure nothing is left behind."""
        self.active = needed(resources)
        try:
            for controller in self.active:
                _make(self.paths[controller])
            self._configure(resources, privileged)
        except OSError as exc:
            self.remove()
            raise DriverError(f"cannot set up the cgroups of container {self.container_id}: {exc}") from exc
        except BaseException:
            self.remove()
            raise

    def _configure(self, resources: Resources, privileged: bool) -> None:
        memory = self.paths["memory"]
        if resources.memory:
            try:
                _write(memory / "memory.limit_in_bytes", resources.memory)
            except OSError as exc:
                if exc.errno in (errno.EINVAL, errno.EBUSY):
                    raise InvalidParameter(f"Memory limit {resources.memory} is refused by the kernel") from None
                raise
            swap = resources.memory_swap
            memsw = memory / "memory.memsw.limit_in_bytes"
            if swap != -1 and memsw.exists():
                _write(memsw, swap if swap > 0 else 2 * resources.memory)
        if resources.cpu_shares:
            _write(self.paths["cpu"] / "cpu.shares", max(resources.cpu_shares, 2))
        if resources.pids:
            _write(self.paths["pids"] / "pids.max", resources.pids)
        devices = self.paths["devices"]
        if privileged:
            _write(devices / "devices.allow", "a")
        else:
            _write(devices / "devices.deny", "a")
            for rule in DEVICE_WHITELIST:
                _write(devices / "devices.allow", rule)

    def pids(self) -> list[int]:
        try:
            with open(self.paths["pids"] / "cgroup.procs") as f:
                return [int(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def kill_all(self) -> None:
        """Freeze the container, SIGKILL every process in it and thaw: nothing escapes by forking."""
        freezer = self.paths["freezer"] / "freezer.state"
        if not freezer.exists():
            return
        for _ in range(50):
            pids = self.pids()
            if not pids:
                return
            _write(freezer, "FROZEN")
            for pid in self.pids():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            _write(freezer, "THAWED")
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the directories (missing ones are fine)."""
        self.kill_all()
        for path in self.paths.values():
            for _ in range(100):
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY:
                        raise DriverError(f"cannot remove cgroup {path}: {exc}") from exc
                    time.sleep(0.01)  # the last process is still being torn down
            else:
                raise DriverError(f"cgroup {path} is still busy")
            try:  # the shared parent goes with its last container, so nothing is left on the host
                path.parent.rmdir()
            except OSError:
                pass  # other containers (of this or another daemon) still use it


def _make(path: Path) -> None:
    """``mkdir -p``, tolerating another driver removing the shared parent at the same moment."""
    for _ in range(5):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    path.mkdir(parents=True, exist_ok=True)


def _write(path: Path, value: object) -> None:
    with open(path, "w") as f:
        f.write(str(value))
