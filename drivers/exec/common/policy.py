"""What both exec drivers enforce the same way: the resource and mount checks of a start request,
the confinement of a container as a driver's start request carries it (``confinement_of``), the
device whitelist, and removing a cgroup directory whose last process is still being torn down."""

from __future__ import annotations

import errno
import math
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from moorage.core.sdk.errors import DriverError, InvalidParameter
from moorage.core.sdk.hookspecs.exec import MIN_MEMORY, Mount, ProcessSpec, Resources
from moorage.core.sdk.mounts import CGROUP_ROOT, unified
from moorage.core.sdk.security import SeccompFilter, capability_mask

#: The capability mask of a privileged container: every one the kernel has
ALL_CAPABILITIES = (1 << 64) - 1


@dataclass(frozen=True)
class Enforced:
    """``spec.confinement`` as a driver enforces it: the capability bit mask, the seccomp filter
    (None: none), the paths hidden and made read-only."""

    capabilities: int
    seccomp: SeccompFilter | None
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]


def confinement_of(spec: ProcessSpec) -> Enforced:
    """What ``spec`` is held to: ``spec.confinement``, or for a privileged container every
    capability, no filter and no paths."""
    if spec.privileged:
        return Enforced(ALL_CAPABILITIES, None, (), ())
    c = spec.confinement
    return Enforced(capability_mask(c.capabilities), c.seccomp_filter(), tuple(c.masked_paths), tuple(c.readonly_paths))


#: what a privileged container's /dev does not take from the host's: its own instances
_OWN_DEV = {"pts", "shm", "mqueue", "console", "ptmx", "fd", "stdin", "stdout", "stderr"}


def host_devices(dev: str = "/dev") -> list[tuple[str, int, int, int, int, int]]:
    """The host's device nodes for a privileged container's /dev, as Docker gives them:
    ``(path below /dev, mode, major, minor, uid, gid)``; the container's own pts, shm, console
    and links are left out, symlinks too."""
    found = []
    for dirpath, dirnames, filenames in os.walk(dev):
        relative_dir = os.path.relpath(dirpath, dev)
        if relative_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in _OWN_DEV]
        for name in filenames:
            relative = name if relative_dir == "." else f"{relative_dir}/{name}"
            if relative in _OWN_DEV:
                continue
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                found.append((relative, st.st_mode, os.major(st.st_rdev), os.minor(st.st_rdev), st.st_uid, st.st_gid))
    return found


def validate_mounts(mounts: list[Mount]) -> None:
    """A source must exist and not be the host's ``/`` in any spelling (``//``, ``/./``, a link
    to it), as 0.6.5 refused ``/``; a destination must be absolute and not ``/``."""
    root = os.stat("/")
    for m in mounts:
        try:
            source = os.stat(m.source)
        except OSError:
            raise InvalidParameter(f"Invalid bind mount '{m.source}:{m.destination}': source doesn't exist") from None
        if (source.st_dev, source.st_ino) == (root.st_dev, root.st_ino):
            raise InvalidParameter(f"Invalid bind mount '{m.source}:{m.destination}': source can't be '/'")
        if not m.destination.startswith("/") or m.destination.strip("/") == "":
            raise InvalidParameter(f"Illegal bind destination: {m.destination}")

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


MEMORY_CGROUP = CGROUP_ROOT / "memory"


def memory_limits() -> tuple[bool, bool]:
    """Whether the memory controller can limit memory, and memory plus swap (the kernel's swap
    accounting), here: both drivers set limits through it (v1, or v2 where ``swapaccount=0``
    on the kernel's command line is what turns swap accounting off)."""
    if unified():
        memory = "memory" in (CGROUP_ROOT / "cgroup.controllers").read_text().split()
        return memory, memory and "swapaccount=0" not in Path("/proc/cmdline").read_text().split()
    return ((MEMORY_CGROUP / "memory.limit_in_bytes").exists(),
            (MEMORY_CGROUP / "memory.memsw.limit_in_bytes").exists())


def cpu_weight(shares: int) -> int:
    """cgroup v2's ``cpu.weight`` (1..10000, default 100) for v1 ``cpu.shares`` (2..262144,
    default 1024), as current runc and crun convert it: a curve in log space that maps 2, 1024
    and 262144 onto 1, 100 and 10000 (the older linear mapping gave 1024 a weight of 39)."""
    if shares <= 2:
        return 1
    if shares >= 262144:
        return 10000
    log = math.log2(shares)
    exponent = round((log * log + 125 * log) / 612 - 7 / 34, 9)  # 1024 must give exactly 100
    return min(math.ceil(10 ** exponent), 10000)


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


def rmdir_cgroup(path: Path, tries: int = 100) -> None:
    """Remove an empty cgroup directory (a missing one is fine), retrying while the kernel still
    tears its last process down (EBUSY); ``DriverError`` if it stays busy or cannot go."""
    for _ in range(tries):
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


def kill_pids(pids: list[int]) -> None:
    """SIGKILL each of ``pids``; one that is gone already is fine."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
