"""Reading and writing cgroup files, and what can be done to one cgroup v2 directory whoever made
it (``V2Cgroup``: freeze, thaw, usage, kill): the native driver's own cgroups and the ones LXC
makes for the lxc driver are read and frozen the same way."""

from __future__ import annotations

import os
import time
from pathlib import Path

from moorage.core.sdk.errors import DriverError
from moorage.core.sdk.hookspecs.exec import ResourceUsage
from moorage.drivers.exec.common.policy import kill_pids

FREEZE_TIMEOUT = 10.0
#: cgroup v1 files report "no limit" as a huge number near 2^63
NO_LIMIT = 1 << 62


class V2Cgroup:
    """One cgroup v2 directory holding a container's processes."""

    def __init__(self, container_id: str, path: Path) -> None:
        self.container_id = container_id
        self.path = path

    def exists(self) -> bool:
        return self.path.exists()

    def pids(self) -> list[int]:
        return read_pids(self.path / "cgroup.procs")

    def _set_frozen(self, frozen: bool) -> None:
        value = "1" if frozen else "0"
        write(self.path / "cgroup.freeze", value)
        events = self.path / "cgroup.events"
        wait_until(lambda: read_keyed(events).get("frozen") == int(value),
                   f"container {self.container_id} to {'freeze' if frozen else 'thaw'}")

    def freeze(self) -> None:
        """Freeze every process; returns once the kernel reports them all frozen."""
        self._set_frozen(True)

    def thaw(self) -> None:
        """Thaw a frozen container (a thawed one is fine); returns once it is thawed."""
        self._set_frozen(False)

    def usage(self) -> ResourceUsage:
        cpu = read_keyed(self.path / "cpu.stat")
        memory = read_keyed(self.path / "memory.stat")
        current = read_int(self.path / "memory.current")
        return ResourceUsage(memory_usage=max(current - memory.get("inactive_file", 0), 0),
                             memory_limit=read_figure(self.path / "memory.max"),
                             cpu_total_ns=cpu.get("usage_usec", 0) * 1000, cpu_user_ns=cpu.get("user_usec", 0) * 1000,
                             cpu_system_ns=cpu.get("system_usec", 0) * 1000,
                             pids=read_int(self.path / "pids.current"), pids_limit=read_figure(self.path / "pids.max"))

    def kill_all(self, kill_file: bool = True) -> None:
        """``cgroup.kill`` (Linux 5.14) kills every process, forks in flight included, in one
        write; older kernels (or ``kill_file=False``) get the freeze, kill, thaw loop."""
        if not self.path.exists():
            return
        kill = self.path / "cgroup.kill"
        for _ in range(500):
            pids = self.pids()
            if not pids:
                return
            if kill_file and kill.exists():
                write(kill, "1")
            else:
                write(self.path / "cgroup.freeze", "1")
                kill_pids(self.pids())
                write(self.path / "cgroup.freeze", "0")
            time.sleep(0.002)
        raise DriverError(f"the processes of container {self.container_id} do not die")


def wait_until(predicate, what: str, timeout: float = FREEZE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not predicate():
        if time.monotonic() > deadline:
            raise DriverError(f"timed out waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def read_pids(procs: Path) -> list[int]:
    try:
        with open(procs) as f:
            return [int(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def read_int(path: Path) -> int:
    """The first number of a file; 0 if it is missing or holds none."""
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return 0


def read_figure(path: Path) -> int:
    """A figure of a cgroup file, 0 when it means "no limit" (``max`` in v2, a huge number in
    v1) or cannot be read (the exec contract reports what cannot be read as 0)."""
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    if not text.isdigit():
        return 0
    value = int(text)
    return 0 if value >= NO_LIMIT else value


def read_keyed(path: Path) -> dict[str, int]:
    """A flat keyed file (``memory.stat``, ``cpu.stat``, ``cgroup.events``): ``key value`` lines."""
    values = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if value.strip().isdigit():
                    values[key] = int(value)
    except FileNotFoundError:
        pass
    return values


def write(path: Path, value: object) -> None:
    write_each(path, [str(value)])


def write_each(path: Path, values: list[str] | tuple[str, ...]) -> None:
    """One ``write`` per value on one open file: the kernel takes each write as one rule, and
    opening the file once instead of per rule saves about 1 ms of a start."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        for value in values:
            os.write(fd, value.encode())
    finally:
        os.close(fd)
