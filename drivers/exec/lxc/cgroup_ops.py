"""Where LXC puts a container's cgroups on this host (``Layout``, probed once by the driver), and
the lxc driver's ``pause``, ``unpause`` and ``stats`` through them.

- **cgroup v1** (legacy or hybrid hosts): ``lxc.payload.<id>`` (and ``lxc.monitor.<id>``) at the
  top of every v1 hierarchy. Pause writes ``FROZEN``/``THAWED`` to the freezer, as Docker's lxc
  driver did.
- **cgroup v2** (unified hosts): one ``lxc.payload.<id>`` below the cgroup of pid 1, less a
  trailing ``init.scope`` (where LXC 5 puts it without ``lxc.cgroup.relative``: ``/`` on a host
  without systemd, the root too under systemd). Pause writes ``cgroup.freeze`` there, as LXC's
  own ``lxc-freeze`` does on v2, and waits for ``frozen`` in ``cgroup.events``; the figures of
  ``stats`` come from the v2 files. Both are ``common.cgroupfs.V2Cgroup`` applied to LXC's
  directory, so that the two exec drivers read and freeze v2 cgroups the same way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from moorage.core.sdk.errors import DriverError, NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import ResourceUsage
from moorage.core.sdk.mounts import CGROUP_ROOT, unified
from moorage.drivers.exec.common.cgroupfs import FREEZE_TIMEOUT, V2Cgroup, read_figure

PAYLOAD = "lxc.payload."
MONITOR = "lxc.monitor."
#: the cgroup LXC makes, shared by its containers, while it moves a container's init into place
PIVOT = "lxc.pivot"


def _v2_base(root: Path, proc_cgroup: str = "/proc/1/cgroup") -> Path:
    """Where LXC 5 makes its cgroups on a unified host: pid 1's cgroup less ``init.scope``."""
    with open(proc_cgroup) as f:
        for line in f:
            if line.startswith("0::"):
                path = line[3:].strip().strip("/")
                if path == "init.scope" or path.endswith("/init.scope"):
                    path = path[: -len("init.scope")].rstrip("/")
                return root / path if path else root
    raise NotSupported("pid 1 is in no cgroup v2 hierarchy")


@dataclass(frozen=True)
class Layout:
    """The cgroup layout LXC uses here: ``tops`` are the directories that hold its
    ``lxc.payload.<id>``, ``lxc.monitor.<id>`` and ``lxc.pivot`` cgroups (each v1 hierarchy, or
    the one v2 base)."""

    v2: bool
    tops: tuple[Path, ...]
    root: Path = CGROUP_ROOT

    @classmethod
    def probe(cls, root: Path = CGROUP_ROOT) -> Layout:
        if unified():
            return cls(True, (_v2_base(root),), root)
        return cls(False, tuple(top for top in sorted(root.iterdir()) if top.is_dir()), root)

    def payload(self, container_id: str, controller: str = "pids") -> Path:
        """The container's payload cgroup (v1: in ``controller``'s hierarchy)."""
        top = self.tops[0] if self.v2 else self.root / controller
        return top / f"{PAYLOAD}{container_id}"

    def directories(self, container_id: str) -> list[Path]:
        """LXC's payload and monitor cgroups of the container that exist now."""
        return [top / f"{prefix}{container_id}" for top in self.tops for prefix in (PAYLOAD, MONITOR)
                if (top / f"{prefix}{container_id}").is_dir()]

    def pivots(self) -> list[Path]:
        return [top / PIVOT for top in self.tops]

    # -- pause, unpause, stats ----------------------------------------------------------------

    def _v2(self, container_id: str) -> V2Cgroup:
        path = self.payload(container_id)
        if not (path / "cgroup.procs").exists():
            raise StateError(f"container {container_id[:12]} is not running")
        return V2Cgroup(container_id, path)

    def set_frozen(self, container_id: str, frozen: bool) -> None:
        """Freeze or thaw every process of the container; returns once the kernel reports it."""
        if self.v2:
            cgroups = self._v2(container_id)
            cgroups.freeze() if frozen else cgroups.thaw()
        else:
            _v1_set_frozen(self.payload(container_id, "freezer") / "freezer.state", container_id, frozen)

    def usage(self, container_id: str) -> ResourceUsage:
        if self.v2:
            return self._v2(container_id).usage()
        return _v1_usage(self, container_id)


def _v1_set_frozen(state: Path, container_id: str, frozen: bool) -> None:
    """Write FROZEN or THAWED and wait until the kernel reports it (FREEZING is transient)."""
    if not state.parent.parent.is_dir():
        raise NotSupported("this host has no cgroup v1 freezer: the lxc driver cannot pause containers")
    if not state.exists():
        raise StateError(f"container {container_id[:12]} is not running")
    wanted = "FROZEN" if frozen else "THAWED"
    deadline = time.monotonic() + FREEZE_TIMEOUT
    while True:
        state.write_text(wanted)
        if state.read_text().strip() == wanted:
            return
        if time.monotonic() > deadline:
            raise DriverError(f"container {container_id[:12]} did not become {wanted.lower()}")
        time.sleep(0.01)


def _v1_usage(layout: Layout, container_id: str) -> ResourceUsage:
    memory = layout.payload(container_id, "memory")
    pids = layout.payload(container_id, "pids")
    if not memory.is_dir() and not pids.is_dir():
        raise StateError(f"container {container_id[:12]} is not running")
    cache = 0
    try:
        for line in (memory / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "total_cache":
                cache = int(value)
    except (OSError, ValueError):
        pass
    cpuacct = layout.payload(container_id, "cpuacct")
    # nanoseconds, so that user + system is the total (cpuacct.stat counts clock ticks)
    user, system = read_figure(cpuacct / "cpuacct.usage_user"), read_figure(cpuacct / "cpuacct.usage_sys")
    return ResourceUsage(
        memory_usage=max(0, read_figure(memory / "memory.usage_in_bytes") - cache),
        memory_limit=read_figure(memory / "memory.limit_in_bytes"),
        cpu_total_ns=user + system, cpu_user_ns=user, cpu_system_ns=system,
        pids=read_figure(pids / "pids.current"), pids_limit=read_figure(pids / "pids.max"))
