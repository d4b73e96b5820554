"""The containers' cgroups, written directly: one small interface (``Hierarchy`` for the host's
layout, ``ContainerCgroups`` for one container) with a cgroup v1 and a cgroup v2 implementation,
chosen by ``probe`` from what the host mounts.

- **v1** (legacy or hybrid hosts, this development machine): ``/sys/fs/cgroup/<controller>/
  moorage/<id>`` per controller; devices through the v1 ``devices`` controller, pause and a
  reliable kill through ``freezer``.
- **v2** (unified hosts: Debian 12, Ubuntu 22.04, Fedora, RHEL 9...): one cgroup per container,
  ``<base>/moorage/<id>``, where ``<base>`` is the daemon's own cgroup (``/`` when started by
  hand, ``/system.slice/moorage.service`` under systemd 254 and later, whose
  ``DelegateSubgroup=`` starts the daemon in a leaf) or, when the daemon runs directly in a
  service's cgroup under systemd (before 254), a transient scope made through systemd's D-Bus
  API (``systemd_scope``: the unit's own cgroup must stay free to receive the next daemon).
  Devices through an eBPF program (``devices``), pause through ``cgroup.freeze``, a reliable
  kill through ``cgroup.kill``.

Apart from making that scope, nothing else manages these directories: the driver creates them
before the container's process joins them and removes them after the process is gone. The
shared parents stay while the driver runs and go at its ``cleanup`` when no container uses them
any more.
"""

from __future__ import annotations

import abc
import contextlib
import errno
import os
import time
from collections.abc import Iterator
from pathlib import Path

from moorage.core.sdk.errors import DriverError, InvalidParameter, NotSupported
from moorage.core.sdk.hookspecs.exec import Resources, ResourceUsage
from moorage.core.sdk.mounts import CGROUP_ROOT, unified
from moorage.drivers.exec.common.cgroupfs import (
    NO_LIMIT,
    V2Cgroup,
    read_figure,
    read_int,
    read_keyed,
    read_pids,
    wait_until,
    write,
    write_each,
)
from moorage.drivers.exec.common.policy import DEVICE_WHITELIST, cpu_weight, kill_pids, rmdir_cgroup
from moorage.drivers.exec.native import devices, systemd_scope

CONTROLLERS = ("memory", "cpu", "devices", "pids", "freezer")  # v1: one hierarchy each
V2_CONTROLLERS = ("memory", "cpu", "pids")  # v2: enabled in cgroup.subtree_control down the path
PARENT = "moorage"
#: v2: the leaf the daemon moves its own processes into when its cgroup must hold children only
DAEMON_LEAF = "moorage.daemon"


class ContainerCgroups(abc.ABC):
    """The cgroups of one container. ``create`` makes and configures them (nothing is left on
    failure); the container's first process joins them itself through ``join_files``."""

    def __init__(self, container_id: str) -> None:
        self.container_id = container_id

    @abc.abstractmethod
    def create(self, resources: Resources, privileged: bool) -> None:
        """Make the cgroups and write the limits and the device rules; on any failure remove
        them and raise (``InvalidParameter`` for a limit the kernel refuses, else ``DriverError``)."""

    @abc.abstractmethod
    def join_files(self) -> list[str]:
        """The files the container's pid 1 writes ``0`` to, to join its cgroups (in order)."""

    @abc.abstractmethod
    def exists(self) -> bool:
        """Whether any of the container's cgroup directories exists."""

    @abc.abstractmethod
    def pids(self) -> list[int]:
        """Host pids of every process in the container's cgroup (empty if it has none)."""

    @abc.abstractmethod
    def freeze(self) -> None:
        """Freeze every process; returns once the kernel reports them all frozen."""

    @abc.abstractmethod
    def thaw(self) -> None:
        """Thaw a frozen container (a thawed one is fine); returns once it is thawed."""

    @abc.abstractmethod
    def usage(self) -> ResourceUsage:
        """What the container's processes use now (figures that cannot be read are 0)."""

    @abc.abstractmethod
    def kill_all(self) -> None:
        """SIGKILL every process, including ones forking while this runs; returns once the
        cgroup is empty."""

    def remove(self) -> None:
        """Kill what is left and remove the directories (missing ones are fine)."""
        self.kill_all()
        for path in self.directories():
            rmdir_cgroup(path)

    @abc.abstractmethod
    def directories(self) -> list[Path]:
        """Every directory ``create`` may have made, deepest first."""


class Hierarchy(abc.ABC):
    """The host's cgroup layout, as the driver uses it (chosen by ``probe``)."""

    version: int

    @abc.abstractmethod
    def container(self, container_id: str) -> ContainerCgroups:
        """The cgroups of one container (created or not)."""

    @abc.abstractmethod
    def memory_limits(self) -> tuple[bool, bool]:
        """Whether memory, and memory plus swap, can be limited (``GET /info``)."""

    @abc.abstractmethod
    def remove_unused_parents(self) -> None:
        """Remove the shared parents that no container (of any daemon) uses."""

    def close(self) -> None:  # noqa: B027  (most layouts hold nothing open)
        """Release what the hierarchy holds open (the driver's ``cleanup``); it may be used again."""

    #: whether ``adopt`` must be given a process before containers can be made (a systemd scope)
    needs_keeper: bool = False

    def adopt(self, pid: int) -> None:  # noqa: B027  (most layouts need no process of the driver's)
        """Put ``pid`` (the driver's zygote, whose children are the monitors) and its children
        where the layout wants them; called whenever the driver starts a zygote."""


def probe() -> Hierarchy:
    """The host's layout: v2 where ``/sys/fs/cgroup`` is the unified hierarchy, v1 where every
    controller the driver needs is a v1 hierarchy (legacy and hybrid hosts); ``NotSupported``
    otherwise, saying what is missing."""
    if unified():
        own = own_cgroup()
        return V2Hierarchy(CGROUP_ROOT, own, systemd_scope.this_daemons_scope(own))
    for controller in CONTROLLERS:
        if not (CGROUP_ROOT / controller / "cgroup.procs").exists():
            raise NotSupported(f"the cgroup v1 controller {controller!r} is not mounted at {CGROUP_ROOT / controller}, "
                               f"and {CGROUP_ROOT} is not a cgroup v2 (unified) hierarchy")
    return V1Hierarchy()


# -- cgroup v1 ---------------------------------------------------------------------------------


def needed(resources: Resources) -> list[str]:
    """The v1 controllers a container joins: devices, pids (``processes``) and freezer (a
    reliable kill) always; memory and cpu only with a limit or a weight, because every cgroup a
    process is moved into costs an RCU grace period (about a millisecond) at start."""
    return [c for c in CONTROLLERS if (c != "memory" or resources.memory) and (c != "cpu" or resources.cpu_shares)]


class V1Hierarchy(Hierarchy):
    version = 1

    def container(self, container_id: str) -> V1Cgroups:
        return V1Cgroups(container_id)

    def memory_limits(self) -> tuple[bool, bool]:
        memory = CGROUP_ROOT / "memory"
        return (memory / "memory.limit_in_bytes").exists(), (memory / "memory.memsw.limit_in_bytes").exists()

    def remove_unused_parents(self) -> None:
        for controller in CONTROLLERS:
            try:
                (CGROUP_ROOT / controller / PARENT).rmdir()
            except OSError:
                pass  # missing, or still holding containers


class V1Cgroups(ContainerCgroups):
    """``/sys/fs/cgroup/<controller>/moorage/<id>`` in each v1 hierarchy."""

    def __init__(self, container_id: str) -> None:
        super().__init__(container_id)
        self.paths = {c: CGROUP_ROOT / c / PARENT / container_id for c in CONTROLLERS}
        self.active: list[str] = []

    def join_files(self) -> list[str]:
        """The ``tasks`` files of the controllers ``create`` set up: the container's pid 1 joins
        by writing ``0`` to each itself. Moving another process (or a whole thread group, via
        ``cgroup.procs``) write-locks the kernel's global threadgroup semaphore, which waits for
        an RCU grace period (5-20 ms here, on the start's critical path); a single-threaded
        process moving its own thread skips that lock (0.05 ms per hierarchy). An object made
        for a container created earlier (``exec``, a restored container) finds them on disk."""
        active = self.active or [c for c in CONTROLLERS if self.paths[c].is_dir()]
        return [str(self.paths[c] / "tasks") for c in active]

    def directories(self) -> list[Path]:
        return list(self.paths.values())

    def exists(self) -> bool:
        return any(p.exists() for p in self.paths.values())

    def create(self, resources: Resources, privileged: bool) -> None:
        self.active = needed(resources)
        with _undo_on_failure(self):
            for controller in self.active:
                _make(self.paths[controller])
            self._configure(resources, privileged)

    def _configure(self, resources: Resources, privileged: bool) -> None:
        memory = self.paths["memory"]
        if resources.memory:
            _write_limit(memory / "memory.limit_in_bytes", resources.memory, "Memory")
            swap = resources.memory_swap
            memsw = memory / "memory.memsw.limit_in_bytes"
            if swap != -1 and memsw.exists():
                write(memsw, swap if swap > 0 else 2 * resources.memory)
        if resources.cpu_shares:
            write(self.paths["cpu"] / "cpu.shares", max(resources.cpu_shares, 2))
        if resources.pids:
            write(self.paths["pids"] / "pids.max", resources.pids)
        device_rules = self.paths["devices"]
        if privileged:
            write(device_rules / "devices.allow", "a")
        else:
            write(device_rules / "devices.deny", "a")
            write_each(device_rules / "devices.allow", DEVICE_WHITELIST)

    def pids(self) -> list[int]:
        return read_pids(self.paths["pids"] / "cgroup.procs")

    def _freezer(self) -> Path:
        return self.paths["freezer"] / "freezer.state"

    def freeze(self) -> None:
        state = self._freezer()
        write(state, "FROZEN")
        # FREEZING until every task stopped; reading the file makes the kernel check again
        wait_until(lambda: state.read_text().strip() == "FROZEN", f"container {self.container_id} to freeze")

    def thaw(self) -> None:
        write(self._freezer(), "THAWED")

    def usage(self) -> ResourceUsage:
        memory = self.paths["memory"]
        pids = self.pids()
        user_ns, system_ns, rss = _proc_usage(pids)  # no cpuacct hierarchy is joined (start time)
        memory_usage, memory_limit = rss, 0
        if (memory / "memory.usage_in_bytes").exists():
            stat = read_keyed(memory / "memory.stat")
            memory_usage = max(read_int(memory / "memory.usage_in_bytes") - stat.get("total_inactive_file", 0), 0)
            memory_limit = read_int(memory / "memory.limit_in_bytes")
            memory_limit = 0 if memory_limit >= NO_LIMIT else memory_limit
        return ResourceUsage(memory_usage=memory_usage, memory_limit=memory_limit,
                             cpu_total_ns=user_ns + system_ns, cpu_user_ns=user_ns, cpu_system_ns=system_ns,
                             pids=len(pids), pids_limit=read_figure(self.paths["pids"] / "pids.max"))

    def kill_all(self) -> None:
        """Freeze the container, SIGKILL every process in it and thaw: nothing escapes by forking."""
        freezer = self._freezer()
        if not freezer.exists():
            return
        for _ in range(50):
            if not self.pids():
                return
            write(freezer, "FROZEN")
            kill_pids(self.pids())
            write(freezer, "THAWED")
            time.sleep(0.01)


# -- cgroup v2 ---------------------------------------------------------------------------------


def own_cgroup(proc_cgroup: str = "/proc/self/cgroup") -> str:
    """This process's cgroup v2 path (``0::/path``), ``/`` for the root."""
    with open(proc_cgroup) as f:
        for line in f:
            if line.startswith("0::"):
                return line[3:].strip() or "/"
    raise NotSupported("this process is in no cgroup v2 hierarchy")


class V2Hierarchy(Hierarchy):
    """``<base>/moorage/<id>``: ``<base>`` is the daemon's own cgroup ``own`` (the leaf it may
    have moved itself into, ``moorage.daemon``, excluded), or ``scope``'s: then the scope is
    made (or taken over from the unit's previous daemon) when the driver's zygote starts
    (``adopt``), and the zygote and monitors go to its leaf."""

    version = 2

    def __init__(self, root: Path, own: str, scope: systemd_scope.Scope | None = None) -> None:
        self.root = root
        self.scope = scope
        base = root / (scope.cgroup if scope else own).lstrip("/")
        if scope is None and base.name == DAEMON_LEAF:
            base = base.parent
        self.base = base
        self.parent = base / PARENT
        self.leaf = base / (systemd_scope.LEAF if scope else DAEMON_LEAF)
        self.needs_keeper = scope is not None
        if not devices.available():
            raise NotSupported("cgroup v2 needs an eBPF device filter, and this kernel refuses to load one "
                               "(BPF_PROG_TYPE_CGROUP_DEVICE)")
        self.device_filter = devices.AllowList(DEVICE_WHITELIST)  # loaded once, attached per container
        if scope is None or base.is_dir():
            self._delegate_controllers()

    def adopt(self, pid: int) -> None:
        """With a scope: make it with ``pid`` in it if it is gone (or was never made), move
        ``pid`` and its children into its leaf, and enable the controllers below it."""
        if self.scope is None:
            return
        if not self.base.is_dir():
            systemd_scope.start(self.scope, self.root, pid)
        _make(self.leaf)
        for process in (pid, *systemd_scope.children(pid)):
            try:
                write(self.leaf / "cgroup.procs", process)
            except ProcessLookupError:
                pass
        self._delegate_controllers()

    def _delegate_controllers(self) -> None:
        """Make memory, cpu and pids available to every container cgroup: enable them from the
        root down to ``base`` where an ancestor has not, then in ``base`` and ``base/moorage``.
        A cgroup with processes cannot enable controllers for children (the "no internal
        processes" rule, the root excepted): then the daemon moves the processes of ``base``
        (its own) into the leaf ``base/moorage.daemon`` first."""
        chain = [self.root / p for p in self.base.relative_to(self.root).parents][::-1] + [self.base]
        for parent, child in zip(chain, chain[1:], strict=False):
            missing = [c for c in V2_CONTROLLERS if c not in _controllers(child)]
            if missing:
                try:
                    _enable(parent, missing)
                except OSError as exc:
                    raise NotSupported(
                        f"the cgroup v2 controllers {' '.join(missing)} are not available in {child} and cannot be "
                        f"enabled in {parent} ({exc.strerror}); under systemd, run moorage.service (Delegate=yes)"
                    ) from None
        absent = [c for c in V2_CONTROLLERS if c not in _controllers(self.base)]
        if absent:
            raise NotSupported(f"this kernel's cgroup v2 hierarchy has no {' '.join(absent)} controller")
        try:
            _enable(self.base, V2_CONTROLLERS)
        except OSError as exc:
            if exc.errno != errno.EBUSY or self.base == self.root:
                raise NotSupported(f"cannot enable cgroup v2 controllers in {self.base}: {exc.strerror}") from None
            self._move_into_leaf()
            _enable(self.base, V2_CONTROLLERS)
        _make(self.parent)
        _enable(self.parent, V2_CONTROLLERS)

    def _move_into_leaf(self) -> None:
        leaf = self.leaf
        _make(leaf)
        for _ in range(20):
            pids = read_pids(self.base / "cgroup.procs")
            if not pids:
                return
            for pid in pids:
                try:
                    write(leaf / "cgroup.procs", pid)
                except ProcessLookupError:
                    pass
        raise NotSupported(f"processes keep appearing in {self.base}: cannot make it a cgroup without processes")

    def container(self, container_id: str) -> V2Cgroups:
        return V2Cgroups(container_id, self.parent / container_id, self.device_filter)

    def close(self) -> None:
        self.device_filter.close()

    def memory_limits(self) -> tuple[bool, bool]:
        # probe required the memory controller; swap needs the kernel's swap accounting
        return True, (self.parent / "memory.swap.max").exists()

    def remove_unused_parents(self) -> None:
        try:
            self.parent.rmdir()
        except OSError:
            pass  # still holding containers (or another daemon's)


class V2Cgroups(V2Cgroup, ContainerCgroups):
    """One cgroup v2 directory (``V2Cgroup`` freezes, reads and kills it); the device rules
    are an eBPF program attached to it."""

    def __init__(self, container_id: str, path: Path, device_filter: devices.AllowList) -> None:
        V2Cgroup.__init__(self, container_id, path)
        self.device_filter = device_filter

    def join_files(self) -> list[str]:
        return [str(self.path / "cgroup.procs")]

    def directories(self) -> list[Path]:
        return [self.path]

    def create(self, resources: Resources, privileged: bool) -> None:
        with _undo_on_failure(self):
            _make(self.path)
            # another daemon's cleanup may have removed and this mkdir re-made the shared parent
            _enable(self.path.parent, V2_CONTROLLERS)
            if resources.memory:
                _write_limit(self.path / "memory.max", resources.memory, "Memory")
                swap_max = self.path / "memory.swap.max"
                # MemorySwap counts memory plus swap; memory.swap.max counts swap alone
                swap = resources.memory_swap  # 0: twice Memory, so as much swap as memory
                if swap_max.exists():
                    write(swap_max, "max" if swap == -1 else swap - resources.memory if swap > 0 else resources.memory)
            if resources.cpu_shares:
                write(self.path / "cpu.weight", cpu_weight(resources.cpu_shares))
            if resources.pids:
                write(self.path / "pids.max", resources.pids)
            if not privileged:
                self.device_filter.attach(self.path)


# -- helpers -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _undo_on_failure(cgroups: ContainerCgroups) -> Iterator[None]:
    """``create``'s guard: on any failure remove what was made; an OSError becomes DriverError."""
    try:
        yield
    except OSError as exc:
        cgroups.remove()
        raise DriverError(f"cannot set up the cgroups of container {cgroups.container_id}: {exc}") from exc
    except BaseException:
        cgroups.remove()
        raise


def _controllers(cgroup: Path) -> list[str]:
    return (cgroup / "cgroup.controllers").read_text().split()


def _enable(cgroup: Path, controllers: list[str] | tuple[str, ...]) -> None:
    enabled = (cgroup / "cgroup.subtree_control").read_text().split()
    wanted = [c for c in controllers if c not in enabled]
    if wanted:
        write(cgroup / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))












_CLOCK_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc_usage(pids: list[int]) -> tuple[int, int, int]:
    """User and system CPU time (with that of reaped children) and resident memory of
    ``pids``, from ``/proc``: v1 figures for controllers a container does not join."""
    user = system = rss = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/statm") as f:
                rss += int(f.read().split()[1]) * _PAGE
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        # after the name: state is fields[0]; utime, stime, cutime, cstime are stat fields 14-17
        user += (int(fields[11]) + int(fields[13])) * _CLOCK_TICK_NS
        system += (int(fields[12]) + int(fields[14])) * _CLOCK_TICK_NS
    return user, system, rss


def _make(path: Path) -> None:
    """``mkdir -p``, tolerating another driver removing the shared parent at the same moment."""
    for _ in range(5):
        try:
            path.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    path.mkdir(parents=True, exist_ok=True)


def _write_limit(path: Path, value: int, name: str) -> None:
    try:
        write(path, value)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EBUSY):
            raise InvalidParameter(f"{name} limit {value} is refused by the kernel") from None
        raise


