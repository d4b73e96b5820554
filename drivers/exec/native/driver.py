"""The ``native`` exec driver: Linux namespaces, cgroups (v1 or v2) and capabilities, without LXC."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Callable
from typing import ClassVar

from moorage.core.sdk.driver import DriverContext, FamilySettings, NoOptions
from moorage.core.sdk.errors import NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import ExecProcess, ExecSpec, ProcessSpec, ResourceUsage
from moorage.core.sdk.security import SeccompFilter
from moorage.drivers.exec.common.driver import MonitorDriver
from moorage.drivers.exec.common.policy import ALL_CAPABILITIES, confinement_of, host_devices
from moorage.drivers.exec.native import container
from moorage.drivers.exec.native.cgroups import ContainerCgroups, probe
from moorage.drivers.exec.native.docker_exec import exec_in

NAMESPACES = ("mnt", "pid", "uts", "ipc", "net")
#: compiled seccomp programs kept (one per distinct filter: CapAdd/CapDrop change it)
MAX_PROGRAMS = 32


class NativeDriver(MonitorDriver):
    """Runs each container under a small monitor process forked from a pre-started zygote.

    The monitor (``monitor``) forks the container's first process, which isolates itself
    (``container``); the cgroups are written directly (``cgroups``: v1 or v2, as the host
    mounts them, chosen when the driver is made). See docs/exec-drivers.md
    for the process tree, the files under ``<state_dir>/exec`` and where the start time goes.
    """

    name = "native"
    priority = 10
    zygote_module = "moorage.drivers.exec.native.zygote"
    #: read-only binds made read-only mount by mount (``container.Launch``), for its test
    readonly_fallback: ClassVar[bool] = False

    def __init__(self, context: DriverContext[NoOptions, FamilySettings]) -> None:
        super().__init__(context)
        if os.geteuid() != 0:
            raise NotSupported("the native exec driver must run as root")
        for ns in NAMESPACES:
            if not os.path.exists(f"/proc/self/ns/{ns}"):
                raise NotSupported(f"this kernel has no {ns} namespaces")
        self.cgroups = probe()
        if self.cgroups.needs_keeper:  # the containers' systemd scope is made with the zygote in it
            with self._lock:
                self._spawn_zygote()
        #: compiled seccomp programs by filter (JSON), the least recently used first
        self._programs: dict[SeccompFilter, str] = {}
        self._programs_lock = threading.Lock()
        #: each running container's confinement (``confinement``), for ``exec``
        self._confinements: dict[str, container.Confinement] = {}

    def _spawn_zygote(self) -> None:
        super()._spawn_zygote()
        assert self._zygote is not None
        try:
            self.cgroups.adopt(self._zygote.pid)
        except BaseException:
            self._close_zygote()
            raise

    def start(self, spec: ProcessSpec, on_namespace: Callable[[int], None] | None = None) -> int:
        identity, exec_dir = self._prepare(spec)
        cgroups = self.cgroups.container(spec.container_id)
        cgroups.create(spec.resources, spec.privileged)
        confinement = self.confinement(spec)
        launch = container.Launch(
            rootfs=str(spec.rootfs), args=tuple(spec.args), env=tuple(spec.env), hostname=spec.hostname,
            domainname=spec.domainname, working_dir=spec.working_dir, privileged=spec.privileged,
            isolate_network=spec.isolate_network,
            mounts=tuple((str(m.source), m.destination, m.readonly) for m in spec.mounts),
            readonly_rootfs=spec.readonly_rootfs, tty_size=spec.tty_size if spec.tty and spec.tty_size else None,
            uid=identity.uid, gid=identity.gid, groups=tuple(identity.groups), confinement=confinement,
            cgroup_files=tuple(cgroups.join_files()), readonly_fallback=self.readonly_fallback)
        self._confinements[spec.container_id] = confinement
        return self._launch(spec, exec_dir, launch, on_namespace, cgroups.remove)

    def restore(self, spec: ProcessSpec) -> bool:
        running = super().restore(spec)
        if running:
            self._confinements[spec.container_id] = self.confinement(spec)
        return running

    def confinement(self, spec: ProcessSpec) -> container.Confinement:
        """``policy.confinement_of(spec)`` with the seccomp filter compiled: once per distinct
        filter, then from ``self._programs``. What ``container.confine`` takes, for ``docker
        exec`` too."""
        enforced = confinement_of(spec)
        program = None
        if enforced.seccomp is not None:
            with self._programs_lock:
                program = self._programs.pop(enforced.seccomp, None)
            if program is None:
                program = base64.b64encode(container.compile_filter(enforced.seccomp.to_json())).decode()
            with self._programs_lock:
                self._programs[enforced.seccomp] = program  # most recent last
                while len(self._programs) > MAX_PROGRAMS:
                    self._programs.pop(next(iter(self._programs)))
        devices = tuple(host_devices()) if spec.privileged else ()
        return container.Confinement(enforced.capabilities, program, enforced.masked_paths, enforced.readonly_paths,
                                     devices)

    def processes(self, container_id: str) -> list[int]:
        return self._pid_first(container_id, self.cgroups.container(container_id).pids())

    def memory_limits(self) -> tuple[bool, bool]:
        return self.cgroups.memory_limits()

    def exec(self, container_id: str, spec: ExecSpec) -> ExecProcess:
        pids = self.processes(container_id)
        confinement = self._confinements.get(container_id)
        if spec.privileged:  # exec --privileged: as a privileged container's processes
            capabilities, program = ALL_CAPABILITIES, None
        elif confinement is None:
            capabilities, program = 0, None
        else:
            capabilities, program = confinement.capabilities, confinement.seccomp_program
        return exec_in(pids[0] if pids else 0, self.cgroups.container(container_id).join_files(), spec,
                       capabilities, program)

    def cleanup(self) -> None:
        super().cleanup()
        self.cgroups.remove_unused_parents()
        self.cgroups.close()

    def release(self, container_id: str) -> None:
        self._confinements.pop(container_id, None)
        c = self._containers.pop(container_id, None)
        self.cgroups.container(container_id).remove()  # kills whatever is left, then removes the directories
        if c is not None and self._running(c):
            self.wait_gone(c)

    # -- pause, unpause, stats: the container's cgroups ------------------------------------------

    def _running_cgroups(self, container_id: str) -> ContainerCgroups:
        c = self._get(container_id)
        cgroups = self.cgroups.container(container_id)
        if not self._running(c) or not cgroups.pids():
            raise StateError(f"container {container_id} is not running")
        return cgroups

    def pause(self, container_id: str) -> None:
        self._running_cgroups(container_id).freeze()

    def unpause(self, container_id: str) -> None:
        self._running_cgroups(container_id).thaw()

    def stats(self, container_id: str) -> ResourceUsage:
        return self._running_cgroups(container_id).usage()
