"""cgroups v1 written directly: ``/sys/fs/cgroup/<controller>/moorage/<id>`` per container.

This host's layout is hybrid (v1 controllers plus a unified hierarchy) without systemd, so
nothing else manages these directories: the driver creates them before the container's
process joins them and removes them after the process is gone. The shared parents
``<controller>/moorage`` stay while the driver runs (making and removing them cost each start
about 0.4 ms) and go at its ``cleanup`` when no container uses them any more.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from moorage.core.errors import DriverError, InvalidParameter, NotSupported
from moorage.core.hookspecs.exec import Resources
from moorage.drivers.exec.common.policy import DEVICE_WHITELIST, kill_pids, rmdir_cgroup

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "cpu", "devices", "pids", "freezer")
PARENT = "moorage"

def probe() -> None:
    """Raise ``NotSupported`` unless every controller is mounted as cgroup v1 here."""
    for controller in CONTROLLERS:
        if not (CGROUP_ROOT / controller / "cgroup.procs").exists():
            raise NotSupported(f"the cgroup v1 controller {controller!r} is not mounted at {CGROUP_ROOT / controller}")


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

    def tasks_files(self) -> list[str]:
        """The ``tasks`` files of the controllers ``create`` set up: the container's pid 1 joins
        by writing ``0`` to each itself. Moving another process (or a whole thread group, via
        ``cgroup.procs``) write-locks the kernel's global threadgroup semaphore, which waits for
        an RCU grace period (5-20 ms here, on the start's critical path); a single-threaded
        process moving its own thread skips that lock (0.05 ms per hierarchy)."""
        return [str(self.paths[c] / "tasks") for c in self.active]

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
            _write_each(devices / "devices.allow", DEVICE_WHITELIST)

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
            kill_pids(self.pids())
            _write(freezer, "THAWED")
            time.sleep(0.01)

    def remove(self) -> None:
        """Kill what is left and remove the directories (missing ones are fine)."""
        self.kill_all()
        for path in self.paths.values():
            rmdir_cgroup(path)


def remove_unused_parents() -> None:
    """Remove the shared ``moorage`` parents that no container (of any daemon) uses."""
    for controller in CONTROLLERS:
        try:
            (CGROUP_ROOT / controller / PARENT).rmdir()
        except OSError:
            pass  # missing, or still holding containers


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
    _write_each(path, [str(value)])


def _write_each(path: Path, values: list[str] | tuple[str, ...]) -> None:
    """One ``write`` per value on one open file: the kernel takes each write as one rule, and
    opening the file once instead of per rule saves about 1 ms of a start."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for value in values:
            os.write(fd, value.encode())
    finally:
        os.close(fd)
