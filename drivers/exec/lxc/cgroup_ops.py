"""The lxc driver's ``pause``, ``unpause`` and ``stats``: through the cgroups LXC made for the
container (``lxc.payload.<id>`` in each cgroup v1 hierarchy), as Docker's lxc driver did with
the freezer."""

from __future__ import annotations

import time
from pathlib import Path

from moorage.core.errors import DriverError, NotSupported, StateError
from moorage.core.hookspecs.exec import ResourceUsage

FREEZE_TIMEOUT = 10.0
#: cgroup v1 reports "no limit" as a huge number near 2^63
_UNLIMITED = 1 << 62


def payload(cgroup_root: Path, controller: str, container_id: str) -> Path:
    return cgroup_root / controller / f"lxc.payload.{container_id}"


def _freezer(cgroup_root: Path, container_id: str) -> Path:
    state = payload(cgroup_root, "freezer", container_id) / "freezer.state"
    if not (cgroup_root / "freezer").is_dir():
        raise NotSupported("this host has no cgroup v1 freezer: the lxc driver cannot pause containers")
    if not state.exists():
        raise StateError(f"container {container_id[:12]} is not running")
    return state


def set_frozen(cgroup_root: Path, container_id: str, frozen: bool) -> None:
    """Write FROZEN or THAWED and wait until the kernel reports it (FREEZING is transient)."""
    state = _freezer(cgroup_root, container_id)
    wanted = "FROZEN" if frozen else "THAWED"
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while True:
        state.write_text(wanted)
        if state.read_text().strip() == wanted:
            return
        if time.monotonic() > deadline:
            raise DriverError(f"container {container_id[:12]} did not become {wanted.lower()}")
        time.sleep(0.01)


def _read_int(path: Path) -> int:
    try:
        text = path.read_text().strip()
    except OSError:
        return 0
    if text == "max":
        return 0
    try:
        value = int(text)
    except ValueError:
        return 0
    return 0 if value >= _UNLIMITED else value


def usage(cgroup_root: Path, container_id: str) -> ResourceUsage:
    memory = payload(cgroup_root, "memory", container_id)
    if not memory.is_dir() and not payload(cgroup_root, "pids", container_id).is_dir():
        raise StateError(f"container {container_id[:12]} is not running")
    cache = 0
    try:
        for line in (memory / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "total_cache":
                cache = int(value)
    except (OSError, ValueError):
        pass
    cpuacct = payload(cgroup_root, "cpuacct", container_id)
    # nanoseconds, so that user + system is the total (cpuacct.stat counts clock ticks)
    user, system = _read_int(cpuacct / "cpuacct.usage_user"), _read_int(cpuacct / "cpuacct.usage_sys")
    pids = payload(cgroup_root, "pids", container_id)
    return ResourceUsage(
        memory_usage=max(0, _read_int(memory / "memory.usage_in_bytes") - cache),
        memory_limit=_read_int(memory / "memory.limit_in_bytes"),
        cpu_total_ns=user + system, cpu_user_ns=user, cpu_system_ns=system,
        pids=_read_int(pids / "pids.current"), pids_limit=_read_int(pids / "pids.max"))
