"""Starting a container (reference §3.1): mount the rootfs (graph ``get``), set up volumes and
binds, write hosts/hostname/resolv.conf, build the ``ProcessSpec``, and let the exec driver
start it; the exec driver calls back with the pid of the new network namespace, where the
network driver joins the container before its command runs. Any failure undoes what was done,
in reverse (``UndoStack``)."""

from __future__ import annotations

import logging
import signal as signals
import time
from collections.abc import Callable
from pathlib import Path

from moorage.core.kernel.config import DaemonSection
from moorage.core.sdk.errors import DriverError, StateError
from moorage.core.sdk.hookspecs.exec import Mount, ProcessSpec, Resources
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding
from moorage.core.sdk.ids import short_id
from moorage.core.sdk.logs import LogRotation, log_position
from moorage.core.sdk.security import SecurityPolicy
from moorage.core.services import container_config
from moorage.core.services.container import Container
from moorage.core.services.container_files import hosts_file, write_container_files
from moorage.core.services.container_model import NetworkSettings
from moorage.core.services.container_streams import AttachStreams
from moorage.core.services.images import format_time
from moorage.core.services.run_environment import RunEnvironment
from moorage.core.services.volumes import VolumeManager

log = logging.getLogger(__name__)


class UndoStack:
    """What a start has done so far, as the steps that undo it; ``unwind`` runs them in
    reverse, each one even if an earlier one failed."""

    def __init__(self, container: Container) -> None:
        self.container = container
        self._steps: list[Callable[[], None]] = []

    def push(self, step: Callable[[], None]) -> None:
        self._steps.append(step)

    def unwind(self) -> None:
        for step in reversed(self._steps):
            try:
                step()
            except Exception:
                log.exception("undoing a failed start of %s", short_id(self.container.id))


class NamespaceJoin:
    """The network driver joining a starting container, given the pid of its new network
    namespace: by the exec driver before the command runs, or by the start right after."""

    def __init__(self, starter: Starter, container: Container, network: NetworkDriver,
                 ports: dict[str, list[PortBinding]], link_hosts: dict[str, str], undo: UndoStack) -> None:
        self.starter, self.container, self.network = starter, container, network
        self.ports, self.link_hosts, self.undo = ports, link_hosts, undo
        #: what the join gave, once it happened
        self.endpoint: Endpoint | None = None

    def __call__(self, pid: int) -> None:
        container, network, config = self.container, self.network, self.container.config
        endpoint = network.join(container.id, pid, self.ports, config.hostname)
        self.undo.push(lambda: network.leave(container.id))
        self.endpoint = endpoint
        if endpoint.ip_address:
            # the container's own address in its /etc/hosts; written in place, since the
            # file may already be bind-mounted (a rename would leave the old inode there)
            with open(container.directory / "hosts", "wb") as f:
                f.write(hosts_file(config.hostname, config.domainname, endpoint.ip_address, self.link_hosts))
        # recorded before the command runs: a daemon killed from here on restores this
        # run's address and ports, not a previous run's (bench/soak.py found that)
        container.network = NetworkSettings.from_endpoint(endpoint)
        container.internal.endpoint = endpoint
        if endpoint != Endpoint():
            self.starter.env.containers.save(container, durable=False)


class Starter:
    """Starts a container's run; the caller holds the container's lock."""

    def __init__(self, env: RunEnvironment, daemon: DaemonSection, security: SecurityPolicy,
                 log_rotation: LogRotation, streams: AttachStreams, volumes: VolumeManager,
                 monitor: Callable[[Container], None]) -> None:
        self.env = env
        #: the daemon's settings a start reads: ``dns``
        self.daemon = daemon
        #: the default confinement of containers and the bounds of their logs ([security], [logs])
        self.security = security
        self.log_rotation = log_rotation
        self.streams = streams
        self.volumes = volumes
        #: watches a started run until its exit (``ExitHandler.monitor``)
        self.monitor = monitor

    def network_for(self, container: Container) -> tuple[NetworkDriver | None, bool]:
        """The network driver that joins this container (None: none joins it), and whether it
        gets a network namespace of its own: ``NetworkMode`` ``host`` shares the host's,
        ``none`` (or the 1.6 ``NetworkDisabled``) has loopback only, ``bridge``/``default``
        use the daemon's network driver."""
        mode = container.host_config.network_mode
        if mode == "host":
            return None, False
        if container.config.network_disabled or mode == "none":
            return None, True
        network = self.env.network
        return network, network is None or network.isolates

    def start(self, container: Container, link_env: list[str], link_hosts: dict[str, str],
              durable: bool = False, began: float | None = None) -> int:
        """``durable``: the host config changed, so the first record is forced to disk; the
        run state itself is not (see ``ContainerService.save``). ``began``: when the start
        request came (``time.monotonic``), for the started hook's ``duration``."""
        began = time.monotonic() if began is None else began
        container.cleaned.wait()  # the previous run's rootfs, network and exec state are released
        graph = self.env.graph
        network, isolate = self.network_for(container)
        link_hosts = {**dict(container_config.parse_extra_host(e) for e in container.host_config.extra_hosts or []),
                      **link_hosts}
        rootfs = graph.get(container.id)
        undo = UndoStack(container)
        undo.push(lambda: graph.put(container.id))
        join = None
        try:
            spec = self._prepare(container, rootfs, link_env, link_hosts, isolate)
            ports = container_config.requested_ports(container.config, container.host_config)
            if network is not None:
                join = NamespaceJoin(self, container, network, ports, link_hosts, undo)
            pid = self._launch(container, spec, network, join, undo, durable)
            self.streams.connect_waiting(container)
        except BaseException:
            container.exited.set()
            container.cleaned.set()
            self.streams.end_waiting(container)  # the attaches waiting for this start end with it
            undo.unwind()
            raise
        self._record_started(container, join.endpoint if join is not None and join.endpoint else Endpoint(), pid)
        # before the monitor exists: a plugin hears of every run's start before its exit
        self.env.hooks.container_started(container.id, pid, container.state.started_at, time.monotonic() - began,
                                         container.internal.exec_driver or "", container.internal.network_driver or "",
                                         graph.name)
        self.monitor(container)
        return pid

    def _prepare(self, container: Container, rootfs: Path, link_env: list[str], link_hosts: dict[str, str],
                 isolate: bool) -> ProcessSpec:
        """Volumes, binds and the container's own files mounted; the process to start."""
        config, host = container.config, container.host_config
        mounts = self.volumes.mounts(container, rootfs, host)
        write_container_files(container.directory, config.hostname, config.domainname,
                              host.dns or config.dns or self.daemon.dns, "", link_hosts, search=host.dns_search or ())
        mounts += [Mount(container.directory / "hostname", "/etc/hostname"),
                   Mount(container.directory / "hosts", "/etc/hosts"),
                   Mount(container.directory / "resolv.conf", "/etc/resolv.conf")]
        return self.spec(container, rootfs, mounts, link_env, isolate)

    def _launch(self, container: Container, spec: ProcessSpec, network: NetworkDriver | None,
                join: NamespaceJoin | None, undo: UndoStack, durable: bool) -> int:
        """Record the run as started, then have the exec driver start it."""
        exec_driver = self.env.exec
        container.run_log_start = log_position(container.log_path)
        container.exited.clear()
        container.cleaned.clear()
        joins_first = network is not None and network.isolates and network.configures
        # recorded before the process exists: a daemon killed from here on finds the
        # container again at restart and asks the exec driver about it (and its pid)
        container.internal.exec_driver = exec_driver.name
        container.internal.network_driver = network.name if network else ""
        previous_start = container.state.started_at
        container.state.running, container.state.pid = True, 0
        container.state.started_at = format_time()
        container.started_monotonic = time.monotonic()
        self.env.containers.save(container, durable=durable)
        undo.push(lambda: self._not_started(container, previous_start))
        pid = exec_driver.start(spec, on_namespace=join if joins_first else None)
        undo.push(lambda: self._kill_started(container))
        if network is not None and not network.isolates:
            undo.push(lambda: network.leave(container.id))
        elif join is not None and not joins_first:
            join(pid)  # a driver that only looks at the namespace: after the start
        return pid

    def _record_started(self, container: Container, endpoint: Endpoint, pid: int) -> None:
        container.network = NetworkSettings.from_endpoint(endpoint)
        container.internal.endpoint = endpoint
        self._write_back_ports(container, endpoint)
        container.state.running, container.state.pid, container.state.ghost = True, pid, False
        if container.host_config.port_bindings and endpoint.ports:
            # the ports written back; the endpoint was saved at the join, and the pid a
            # restarted daemon gets from the exec driver
            self.env.containers.save(container, durable=False)
        self._set_console_size(container)

    def _set_console_size(self, container: Container) -> None:
        """A tty's first size (``ConsoleSize``) once more right after the start, for the exec
        drivers that cannot set it before the command runs (``ProcessSpec.tty_size``); a
        process that is already gone has no terminal left to size."""
        size = container_config.console_size(container.config, container.host_config)
        if size is not None:
            try:
                self.env.exec.resize(container.id, *size)
            except (StateError, DriverError) as exc:
                log.debug("initial tty size of %s: %s", short_id(container.id), exc)

    def _not_started(self, container: Container, previous_start: str) -> None:
        container.started_monotonic = None
        container.state.running, container.state.pid = False, 0
        container.state.started_at = previous_start
        container.network = NetworkSettings()
        self.env.containers.save(container, durable=False)

    def _kill_started(self, container: Container) -> None:
        """Undo a start whose process already runs (a step after the exec driver's failed)."""
        exec_driver = self.env.exec
        exec_driver.signal(container.id, signals.SIGKILL)
        exec_driver.wait(container.id, timeout=10)
        exec_driver.release(container.id)

    def spec(self, container: Container, rootfs: Path, mounts: list[Mount], link_env: list[str],
             isolate: bool) -> ProcessSpec:
        config, host = container.config, container.host_config
        memory, memory_swap, cpu_shares = container_config.resources(config, host)
        return ProcessSpec(
            container_id=container.id, rootfs=rootfs, args=[container.path, *container.args],
            env=container_config.environment(config, link_env), hostname=config.hostname,
            state_dir=container.directory, log_path=container.log_path, domainname=config.domainname,
            user=config.user, working_dir=config.working_dir, tty=config.tty,
            tty_size=container_config.console_size(config, host), open_stdin=config.open_stdin,
            stdin_once=config.stdin_once, privileged=bool(config.privileged or host.privileged),
            isolate_network=isolate,
            resources=Resources(memory=memory, memory_swap=memory_swap, cpu_shares=cpu_shares),
            mounts=mounts, readonly_rootfs=host.read_only_rootfs,
            driver_options=[(str(e["Key"]), str(e.get("Value", ""))) for e in host.lxc_conf or []],
            confinement=self.security.for_container(host.cap_add, host.cap_drop),
            log_rotation=self.log_rotation,
        )

    @staticmethod
    def _write_back_ports(container: Container, endpoint: Endpoint) -> None:
        """Allocated host ports go back into the host config, so a later start without a body
        asks for the same ports (reference §3.1)."""
        bindings = {}
        for key, made in endpoint.ports.items():
            if made:
                bindings[key] = [{"HostIp": b.host_ip, "HostPort": str(b.host_port)} for b in made]
        if bindings:
            container.host_config.port_bindings = bindings
