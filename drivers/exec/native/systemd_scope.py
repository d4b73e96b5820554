"""Under systemd before 254: the containers' cgroups in a transient scope of their own, made
through systemd's D-Bus API (``common.systemd_bus``: the system bus, else systemd's private
socket), as runc's systemd driver does.

Why: a ``moorage.service`` with ``Delegate=yes`` may write its own cgroup's subtree, but the
containers need controllers enabled in it (``cgroup.subtree_control``), and then the kernel
admits no process into that cgroup itself ("no internal processes"). systemd 254 and later start
the daemon in a leaf (``DelegateSubgroup=moorage.daemon``); older ones (Debian 12's 252) put
the new daemon of ``systemctl restart`` into the unit's own cgroup, which the kernel refuses
while containers run (219/CGROUP). So there the containers go to ``<slice>/<unit>-containers.scope``
instead (``Delegate=yes``, in the service's slice), whose leaf ``monitors`` holds the driver's
zygote and the monitors it forks: the scope lives as long as they or a container do, and the
next daemon of the unit takes it over. The unit's own cgroup keeps no controllers enabled.

Which layout (``scope_for``) is decided from the daemon's own cgroup alone: systemd is pid 1
(``/run/systemd/system``) and the daemon sits directly in a ``.service`` cgroup. In the
``DelegateSubgroup=`` leaf (systemd 254), outside a service (started by hand) or without
systemd, the containers stay below the daemon's own cgroup as before (``cgroups.V2Hierarchy``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from moorage.core.sdk.errors import DriverError
from moorage.drivers.exec.common import systemd_bus

SYSTEMD_RUNNING = Path("/run/systemd/system")  # sd_booted(): pid 1 is systemd
SUFFIX = "-containers.scope"
#: the scope's leaf: the zygote and the monitors (the scope's own cgroup holds children only)
LEAF = "monitors"
#: how long systemd may take to run the scope's start job (minutes under the test VM's TCG)
START_TIMEOUT = 120.0
START_SIGNATURE = "ssa(sv)a(sa(sv))"  # name, mode, properties, auxiliary units


@dataclass(frozen=True)
class Scope:
    """The transient scope that holds one service's containers."""

    name: str  # e.g. moorage-containers.scope
    slice: str  # the service's slice, e.g. system.slice
    cgroup: str  # its cgroup v2 path, e.g. /system.slice/moorage-containers.scope
    service: str  # e.g. moorage.service


def scope_for(own_cgroup: str, systemd_running: bool) -> Scope | None:
    """The scope for the containers of a daemon whose cgroup v2 path is ``own_cgroup``, or None
    to keep them below that cgroup: without systemd, or when the daemon is not directly in a
    service's cgroup (in systemd 254's ``DelegateSubgroup=`` leaf, in a session, at the root)."""
    if not systemd_running:
        return None
    parent, _, unit = own_cgroup.rstrip("/").rpartition("/")
    slice_name = parent.rpartition("/")[2]
    if not unit.endswith(".service") or not slice_name.endswith(".slice"):
        return None
    name = unit.removesuffix(".service").replace("@", "-") + SUFFIX
    return Scope(name=name, slice=slice_name, cgroup=f"{parent}/{name}", service=unit)


def this_daemons_scope(own_cgroup: str) -> Scope | None:
    return scope_for(own_cgroup, SYSTEMD_RUNNING.is_dir())


def start_arguments(scope: Scope, pid: int) -> list:
    """The arguments of ``Manager.StartTransientUnit`` (``ssa(sv)a(sa(sv))``) for ``scope``
    with ``pid`` in it."""
    properties = [
        ("Description", ("s", f"containers of {scope.service} (moorage)")),
        ("Slice", ("s", scope.slice)),
        ("Delegate", ("b", True)),  # its subtree is the driver's
        ("CollectMode", ("s", "inactive-or-failed")),  # a failed scope must not block the name
        ("PIDs", ("au", [pid])),
    ]
    return [scope.name, "fail", properties, []]


def start(scope: Scope, root: Path, pid: int, addresses=systemd_bus.ADDRESSES) -> None:
    """Make ``scope`` with ``pid`` in it and wait until systemd moved it there: through the
    system bus, or systemd's private socket when no bus runs (``systemd_bus``). Another daemon
    of the unit making it at the same moment is fine; anything else is a ``DriverError``."""
    cgroup = root / scope.cgroup.lstrip("/")
    try:
        systemd_bus.call("StartTransientUnit", START_SIGNATURE, start_arguments(scope, pid),
                         addresses=addresses, timeout=START_TIMEOUT)
    except systemd_bus.CallError as exc:
        if not cgroup.is_dir():  # else made meanwhile by another daemon of the unit
            raise DriverError(f"systemd does not make {scope.name}: {exc}") from None
        return
    except (systemd_bus.Unreachable, OSError) as exc:  # OSError: TimeoutError, a connection reset
        raise DriverError(f"cannot ask systemd for {scope.name}: {exc}") from None
    # the method returns a job; the scope's cgroup and the pid's move come when it runs
    deadline = time.monotonic() + START_TIMEOUT
    while not _in(pid, scope.cgroup):
        if time.monotonic() > deadline:
            raise DriverError(f"systemd made no cgroup for {scope.name} in {START_TIMEOUT:.0f} s")
        time.sleep(0.05)


def _in(pid: int, cgroup: str) -> bool:
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(line.strip() == f"0::{cgroup}" for line in f)
    except FileNotFoundError:
        raise DriverError(f"process {pid} died before systemd moved it into its scope") from None


def children(pid: int) -> list[int]:
    """The children of ``pid`` (the zygote's spare monitor, forked before it was moved)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []
