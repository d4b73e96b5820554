"""Running containers: start, stop, kill, restart, wait, attach, resize, and restore after a
daemon restart. Each running container has a monitor thread that waits on the exec driver and
records the exit (state, network, rootfs, events, hooks).

Start, in order (reference §3.1): register links, refuse a running container, mount the
rootfs (graph ``get``), set up volumes and binds, write hosts/hostname/resolv.conf, build the
``ProcessSpec``, and let the exec driver start it; the exec driver calls back with the pid of
the new network namespace, where the network driver joins the container before its command
runs. Any failure undoes what was done, in reverse.
"""

from __future__ import annotations

import logging
import signal as signals
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from moorage.core.kernel.config import DaemonSection
from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.pools import Executor
from moorage.core.sdk.errors import DriverError, InvalidParameter, NotFound, NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import Attachment, ExecDriver, Mount, ProcessSpec, Resources, ResourceUsage, Stream
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding
from moorage.core.sdk.ids import short_id
from moorage.core.sdk.logs import LogPosition, LogRotation, log_position, read_log
from moorage.core.sdk.security import SecurityPolicy
from moorage.core.services import container_config as cc
from moorage.core.services.container_files import hosts_file, write_container_files
from moorage.core.services.containers import EMPTY_NETWORK, Container, ContainerService
from moorage.core.services.execs import ExecService
from moorage.core.services.images import format_time, parse_time
from moorage.core.services.volumes import VolumeManager

log = logging.getLogger(__name__)

DEFAULT_STOP_TIMEOUT = 10


class Runner:
    def __init__(self, containers: ContainerService, exec_driver: ExecDriver | None, network: NetworkDriver | None,
                 daemon: DaemonSection, security: SecurityPolicy, log_rotation: LogRotation,
                 hooks: LifecycleHooks, executor: Executor) -> None:
        self.containers = containers
        self.graph = containers.graph
        self._exec = exec_driver
        #: the selected network driver, or None for loopback only
        self.network = network
        #: the daemon's settings this service reads: ``dns`` and ``restart``
        self.daemon = daemon
        #: the default confinement of containers and the bounds of their logs ([security], [logs])
        self.security = security
        self.log_rotation = log_rotation
        self.hooks = hooks
        self.volumes = VolumeManager(containers.root, containers)
        #: restart policies and AutoRemove run here, after a container's exit
        self.executor = executor
        #: ``docker exec`` instances (``core/services/execs.py``)
        self.execs = ExecService(containers, exec_driver)
        #: attachments waiting for a container to start: container id -> waiters
        self._waiting: dict[str, list[PendingAttach]] = {}
        #: where each container's current run begins in its log
        self._run_log_start: dict[str, LogPosition] = {}
        #: when each container's current run began (``time.monotonic``), for ``run_time``
        self._started_monotonic: dict[str, float] = {}
        self._waiting_lock = threading.Lock()

    @property
    def exec(self) -> ExecDriver:
        if self._exec is None:
            raise NotSupported("no exec driver is available in this daemon")
        return self._exec

    def network_for(self, container: Container) -> tuple[NetworkDriver | None, bool]:
        """The network driver that joins this container (None: none joins it), and whether it
        gets a network namespace of its own: ``NetworkMode`` ``host`` shares the host's,
        ``none`` (or the 1.6 ``NetworkDisabled``) has loopback only, ``bridge``/``default``
        use the daemon's network driver."""
        mode = container.host_config["NetworkMode"]
        if mode == "host":
            return None, False
        if container.config["NetworkDisabled"] or mode == "none":
            return None, True
        return self.network, self.network is None or self.network.isolates

    # -- start -----------------------------------------------------------------------------
    def start(self, name: str, host_config: dict | None = None) -> None:
        began = time.monotonic()
        container = self.containers.get(name)
        new_config = None
        if host_config is not None:  # it replaces the saved one (create's), as in Docker
            cc.check_supported(host_config, "start")
            new_config = cc.normalize_host_config(host_config)
            cc.validate_host(new_config, "start")
        with container.lock:
            if container.removed:
                raise NotFound(f"No such container: {name}")
            if container.state.running:
                raise StateError(f"Cannot start container {name}: The container {container.id} is already running.")
            if new_config is not None:
                container.host_config = new_config
            container.stop_requested = False
            container.internal.pop("RestartCount", None)
            link_env, link_hosts = self._register_links(container, container.host_config)
            self._start(container, link_env, link_hosts, durable=new_config is not None, began=began)
        self.containers.publish("start", container)

    def _start(self, container: Container, link_env: list[str], link_hosts: dict[str, str],
               durable: bool = False, began: float | None = None) -> int:
        """``durable``: the host config changed, so the first record is forced to disk; the
        run state itself is not (see ``ContainerService.save``). ``began``: when the start
        request came (``time.monotonic``), for the started hook's ``duration``."""
        began = time.monotonic() if began is None else began
        container.cleaned.wait()  # the previous run's rootfs, network and exec state are released
        hc = container.host_config
        config = container.config
        exec_driver = self.exec
        network, isolate = self.network_for(container)
        link_hosts = {**dict(cc.parse_extra_host(e) for e in hc["ExtraHosts"] or []), **link_hosts}
        rootfs = self.graph.get(container.id)
        undo: list = [lambda: self.graph.put(container.id)]
        try:
            mounts = self.volumes.mounts(container, rootfs, hc)
            write_container_files(container.directory, config["Hostname"], config["Domainname"],
                                  hc["Dns"] or config["Dns"] or self.daemon.dns, "", link_hosts,
                                  search=hc["DnsSearch"] or ())
            mounts += [Mount(container.directory / "hostname", "/etc/hostname"),
                       Mount(container.directory / "hosts", "/etc/hosts"),
                       Mount(container.directory / "resolv.conf", "/etc/resolv.conf")]
            ports = requested_ports(config, hc)
            endpoint_box: list[Endpoint] = []

            def on_namespace(pid: int) -> None:
                endpoint = network.join(container.id, pid, ports, config["Hostname"])
                undo.append(lambda: network.leave(container.id))
                endpoint_box.append(endpoint)
                if endpoint.ip_address:
                    # the container's own address in its /etc/hosts; written in place, since the
                    # file may already be bind-mounted (a rename would leave the old inode there)
                    with open(container.directory / "hosts", "wb") as f:
                        f.write(hosts_file(config["Hostname"], config["Domainname"], endpoint.ip_address,
                                           link_hosts))
                # recorded before the command runs: a daemon killed from here on restores this
                # run's address and ports, not a previous run's (bench/soak.py found that)
                container.network = network_settings(endpoint)
                container.internal.update(Endpoint=endpoint_to_json(endpoint))
                if endpoint != Endpoint():
                    self.containers.save(container, durable=False)

            spec = self.spec(container, rootfs, mounts, link_env, isolate)
            self._run_log_start[container.id] = log_position(container.log_path)
            container.exited.clear()
            container.cleaned.clear()
            joins_first = network is not None and network.isolates and network.configures
            # recorded before the process exists: a daemon killed from here on finds the
            # container again at restart and asks the exec driver about it (and its pid)
            container.internal.update(ExecDriver=exec_driver.name, NetworkDriver=network.name if network else "")
            previous_start = container.state.started_at
            container.state.running, container.state.pid = True, 0
            container.state.started_at = format_time()
            self._started_monotonic[container.id] = time.monotonic()
            self.containers.save(container, durable=durable)
            undo.append(lambda: self._not_started(container, previous_start))
            pid = exec_driver.start(spec, on_namespace=on_namespace if joins_first else None)
            undo.append(lambda: self._kill_started(container))
            if network is not None and not network.isolates:
                undo.append(lambda: network.leave(container.id))
            elif network is not None and not joins_first:
                on_namespace(pid)  # a driver that only looks at the namespace: after the start
            self._connect_waiting(container)
        except BaseException:
            container.exited.set()
            container.cleaned.set()
            self._end_waiting(container)  # the attaches waiting for this start end with it
            for step in reversed(undo):
                try:
                    step()
                except Exception:
                    log.exception("undoing a failed start of %s", short_id(container.id))
            raise
        endpoint = endpoint_box[0] if endpoint_box else Endpoint()
        container.network = network_settings(endpoint)
        container.internal.update(Endpoint=endpoint_to_json(endpoint))
        self._write_back_ports(container, endpoint)
        container.state.running, container.state.pid, container.state.ghost = True, pid, False
        if container.host_config.get("PortBindings") and endpoint.ports:
            # the ports written back; the endpoint was saved at the join, and the pid a
            # restarted daemon gets from the exec driver
            self.containers.save(container, durable=False)
        self._set_console_size(container)
        # before the monitor exists: a plugin hears of every run's start before its exit
        self.hooks.container_started(container.id, pid, container.state.started_at, time.monotonic() - began,
                                     container.internal.get("ExecDriver", ""),
                                     container.internal.get("NetworkDriver", ""), self.graph.name)
        self._monitor(container)
        return pid

    def _set_console_size(self, container: Container) -> None:
        """A tty's first size (``ConsoleSize``) once more right after the start, for the exec
        drivers that cannot set it before the command runs (``ProcessSpec.tty_size``); a
        process that is already gone has no terminal left to size."""
        size = cc.console_size(container.config, container.host_config)
        if size is not None:
            try:
                self.exec.resize(container.id, *size)
            except (StateError, DriverError) as exc:
                log.debug("initial tty size of %s: %s", short_id(container.id), exc)

    def _not_started(self, container: Container, previous_start: str) -> None:
        self._started_monotonic.pop(container.id, None)
        container.state.running, container.state.pid = False, 0
        container.state.started_at = previous_start
        container.network = dict(EMPTY_NETWORK)
        self.containers.save(container, durable=False)

    def _kill_started(self, container: Container) -> None:
        """Undo a start whose process already runs (a step after the exec driver's failed)."""
        self.exec.signal(container.id, signals.SIGKILL)
        self.exec.wait(container.id, timeout=10)
        self.exec.release(container.id)

    def spec(self, container: Container, rootfs: Path, mounts: list[Mount], link_env: list[str],
             isolate: bool) -> ProcessSpec:
        config, hc = container.config, container.host_config
        memory, memory_swap, cpu_shares = cc.resources(config, hc)
        return ProcessSpec(
            container_id=container.id, rootfs=rootfs, args=[container.path, *container.args],
            env=cc.environment(config, link_env), hostname=config["Hostname"], state_dir=container.directory,
            log_path=container.log_path, domainname=config["Domainname"], user=config["User"],
            working_dir=config["WorkingDir"], tty=config["Tty"], tty_size=cc.console_size(config, hc),
            open_stdin=config["OpenStdin"],
            stdin_once=config["StdinOnce"], privileged=bool(config["Privileged"] or hc["Privileged"]),
            isolate_network=isolate,
            resources=Resources(memory=memory, memory_swap=memory_swap, cpu_shares=cpu_shares),
            mounts=mounts, readonly_rootfs=bool(hc.get("ReadonlyRootfs")),
            driver_options=[(str(e["Key"]), str(e.get("Value", ""))) for e in hc["LxcConf"] or []],
            confinement=self.security.for_container(hc.get("CapAdd"), hc.get("CapDrop")),
            log_rotation=self.log_rotation,
        )

    def _write_back_ports(self, container: Container, endpoint: Endpoint) -> None:
        """Allocated host ports go back into the host config, so a later start without a body
        asks for the same ports (reference §3.1)."""
        bindings = {}
        for key, made in endpoint.ports.items():
            if made:
                bindings[key] = [{"HostIp": b.host_ip, "HostPort": str(b.host_port)} for b in made]
        if bindings:
            container.host_config["PortBindings"] = bindings

    def _register_links(self, container: Container, hc: dict) -> tuple[list[str], dict[str, str]]:
        """Register ``Links`` as name-graph edges, then build the env and hosts entries for every
        child linked under this container (reference §3.2)."""
        for spec in hc["Links"] or []:
            child_name, alias = cc.parse_link(spec)
            child_id = self.containers.names.resolve(child_name)
            if child_id is None:
                raise NotFound(f"Could not find entity for {child_name}")
            if child_id == container.id:
                raise InvalidParameter("Cannot link to yourself")
            self.containers.names.link(container.name, alias, child_id)
        hc["Links"] = None  # links live in the name graph from now on
        env: list[str] = []
        hosts: dict[str, str] = {}
        for path, child_id in sorted(self.containers.names.children(container.name).items()):
            child = self.containers.lookup(child_id)
            alias = path.rsplit("/", 1)[1]
            if child is None or not child.state.running:
                raise StateError(f"Cannot link to a non running container: {self.containers.names.name_of(child_id)} "
                                 f"AS {path}")
            ip = child.network.get("IPAddress", "")
            env += link_environment(alias, path, ip, child)
            if ip:
                hosts[alias] = ip
        return env, hosts

    # -- the monitor -----------------------------------------------------------------------
    def _monitor(self, container: Container) -> None:
        thread = threading.Thread(target=self._watch, args=(container,), name=f"monitor-{container.id[:12]}",
                                  daemon=True)
        thread.start()

    def _watch(self, container: Container) -> None:
        exit_code = None
        try:
            exit_code = self.exec.wait(container.id)
        except Exception:
            log.exception("waiting on %s failed", short_id(container.id))
        self._record_exit(container, -1 if exit_code is None else exit_code)

    def _record_exit(self, container: Container, exit_code: int) -> None:
        """Record the exit (``wait`` returns from here on), then release what the run held."""
        state = container.state
        state.running, state.pid, state.ghost, state.paused = False, 0, False, False
        state.exit_code = exit_code
        state.finished_at = format_time()
        container.network = dict(EMPTY_NETWORK)
        # ``wait`` (and then ``remove``) go on before the save: the exec driver recorded the exit
        # before it told us, so a daemon killed before the save learns it again at restart
        self.containers.publish("die", container, exitCode=str(exit_code))  # before ``stop``'s event
        container.exited.set()
        network_name = container.internal.get("NetworkDriver")
        network = self.network
        for step in (lambda: network.leave(container.id) if network is not None and network_name == network.name
                     else None,
                     lambda: self.graph.put(container.id),
                     lambda: self.exec.release(container.id)):
            try:
                step()
            except Exception:
                log.exception("cleaning up after %s exited", short_id(container.id))
        container.cleaned.set()
        # before the save, which may wait for a new start of the container (its lock); a hook
        # that raises is logged by ``notify`` and the save still happens
        began = self._started_monotonic.pop(container.id, None)
        run_time = (time.monotonic() - began if began is not None
                    else max(0, parse_time(state.finished_at) - parse_time(state.started_at)))
        self.hooks.container_died(container.id, exit_code, state.finished_at, run_time,
                                  container.internal.get("ExecDriver", ""), network_name or "")
        # under the lock, which a removal or a new start holds: a save writes the state as it
        # is then, so it is never older than what a new start saved
        with container.lock:
            if not container.removed:
                try:
                    self.containers.save(container, durable=False)
                except Exception:
                    log.exception("saving the exit of %s", short_id(container.id))
        self._after_exit(container, exit_code)

    # -- restart policies and AutoRemove ---------------------------------------------------
    def _after_exit(self, container: Container, exit_code: int) -> None:
        """Carry out the host config's ``RestartPolicy`` (not after a stop or kill asked for
        by a client) or ``AutoRemove``, in a worker thread."""
        if container.removed or container.stop_requested:
            if container.host_config["AutoRemove"] and not container.removed:
                self.executor.submit(self._auto_remove, container)
            return
        if self._policy_restarts(container, exit_code):
            self.executor.submit(self._restart_by_policy, container, int(container.internal.get("RestartCount", 0)))
        elif container.host_config["AutoRemove"]:
            self.executor.submit(self._auto_remove, container)

    @staticmethod
    def _policy_restarts(container: Container, exit_code: int) -> bool:
        name, retries = cc.restart_policy(container.host_config["RestartPolicy"])
        count = int(container.internal.get("RestartCount", 0))
        return name in ("always", "unless-stopped") or (name == "on-failure" and exit_code != 0
                                                        and (not retries or count < retries))

    def _auto_remove(self, container: Container) -> None:
        try:
            self.containers.remove(container.id)
        except NotFound:
            pass
        except Exception:
            log.exception("removing %s (AutoRemove)", short_id(container.id))

    def _restart_by_policy(self, container: Container, count: int) -> None:
        time.sleep(min(0.1 * (2 ** count), 60.0))  # Docker's back-off: 100 ms doubling, at most a minute
        with container.lock:
            if container.removed or container.stop_requested or container.state.running:
                return
            container.internal["RestartCount"] = count + 1
            try:
                link_env, link_hosts = self._register_links(container, container.host_config)
                self._start(container, link_env, link_hosts)
            except Exception:
                log.exception("restarting %s (RestartPolicy)", short_id(container.id))
                return
        self.containers.publish("start", container)

    # -- stop, kill, restart, wait ---------------------------------------------------------
    def stop(self, name: str, timeout: int = DEFAULT_STOP_TIMEOUT) -> None:
        container = self.containers.get(name)
        if timeout < 0:
            timeout = DEFAULT_STOP_TIMEOUT
        with container.lock:
            self._stop(container, timeout)
        self.containers.publish("stop", container)

    def _stop(self, container: Container, timeout: float) -> None:
        container.stop_requested = True  # no restart policy brings it back
        if not container.state.running:
            return
        self._thaw(container)
        self._signal(container, signals.SIGTERM)
        if not container.exited.wait(timeout):
            self._signal(container, signals.SIGKILL)
            container.exited.wait()

    def _signal(self, container: Container, signum: int) -> None:
        try:
            self.exec.signal(container.id, signum)
        except NotFound:
            pass  # already gone: the monitor records the exit

    def kill(self, name: str, signum: int = 0) -> None:
        """Signals need no lock: a kill must get through while a long stop holds it."""
        container = self.containers.get(name)
        if not container.state.running:
            return
        if signum:
            self._signal(container, signum)
            return
        container.stop_requested = True
        self._thaw(container)
        self._signal(container, signals.SIGKILL)
        container.exited.wait()
        self.containers.publish("kill", container)

    def restart(self, name: str, timeout: int = DEFAULT_STOP_TIMEOUT) -> None:
        container = self.containers.get(name)
        if timeout < 0:
            timeout = DEFAULT_STOP_TIMEOUT
        with container.lock:
            self._stop(container, timeout)
            container.stop_requested = False
            link_env, link_hosts = self._register_links(container, container.host_config)
            self._start(container, link_env, link_hosts)
        self.containers.publish("restart", container)

    def wait(self, name: str) -> int:
        container = self.containers.get(name)
        container.exited.wait()
        return container.state.exit_code

    def exit_code_if_exited(self, name: str) -> int | None:
        """``wait``'s answer when it would not block (the container is not running), else None.
        Reads memory and the name index only, so the API calls it without a thread hop."""
        container = self.containers.get(name)
        return container.state.exit_code if container.exited.is_set() else None

    # -- pause, unpause, stats --------------------------------------------------------------
    def pause(self, name: str) -> None:
        container = self.containers.get(name)
        with container.lock:
            if not container.state.running:
                raise StateError(f"Container {short_id(container.id)} is not running")
            if container.state.paused:
                raise StateError(f"Container {short_id(container.id)} is already paused")
            self.exec.pause(container.id)
            container.state.paused = True
            self.containers.save(container, durable=False)
        self.containers.publish("pause", container)

    def unpause(self, name: str) -> None:
        container = self.containers.get(name)
        with container.lock:
            if not container.state.paused:
                raise StateError(f"Container {short_id(container.id)} is not paused")
            self.exec.unpause(container.id)
            container.state.paused = False
            self.containers.save(container, durable=False)
        self.containers.publish("unpause", container)

    def _thaw(self, container: Container) -> None:
        """A frozen container cannot act on a signal: stop and kill thaw it first."""
        if container.state.paused:
            try:
                self.exec.unpause(container.id)
            except NotFound:
                pass
            container.state.paused = False

    def stats(self, name: str) -> tuple[Container, ResourceUsage]:
        container = self.containers.get(name)
        if not container.state.running:
            raise StateError(f"Container {short_id(container.id)} is not running")
        return container, self.exec.stats(container.id)

    # -- attach ----------------------------------------------------------------------------
    def attach(self, name: str) -> tuple[Container, Attachment | None]:
        """An attachment to a running container's stdio, or None if it is not running."""
        container = self.containers.get(name)
        if not container.state.running:
            return container, None
        try:
            return container, self.exec.attach(container.id)
        except (StateError, NotFound):
            return container, None

    def attach_stream(self, name: str) -> StreamSource:
        """Where an attach's stream comes from: a running container's stdio, else a
        ``PendingAttach`` that gets the stdio of its next start (today's docker CLI attaches
        before it starts a container). Decided before the client is answered: the CLI sends
        the start as soon as it is, and a run that starts and ends in between must not leave
        the attach waiting for a next start that never comes."""
        container = self.containers.get(name)
        with container.lock:  # a start in progress finishes first: then it is running
            log_end = log_position(container.log_path)
            if container.state.running:
                try:
                    return StreamSource(log_end, attachment=self.exec.attach(container.id))
                except (StateError, NotFound):  # it has just ended: its output is in the log
                    return StreamSource(log_position(container.log_path))
            pending = PendingAttach()
            with self._waiting_lock:
                self._waiting.setdefault(container.id, []).append(pending)
            return StreamSource(log_end, pending=pending)

    def _end_waiting(self, container: Container) -> None:
        """A start failed: the attaches waiting for it get no stream (their clients are told by
        the start's error, and must not wait on for a run that did not happen)."""
        for pending in self._take_waiting(container):
            pending.ready.set()

    def _take_waiting(self, container: Container) -> list[PendingAttach]:
        with self._waiting_lock:
            return self._waiting.pop(container.id, [])

    def _connect_waiting(self, container: Container) -> None:
        for pending in self._take_waiting(container):
            if pending.cancelled:
                continue
            try:
                # with replay: the output written since the start, before this attach, comes first
                pending.attachment = self.exec.attach(container.id, replay=True)
            except (StateError, NotFound):
                # the run already ended: its whole output is in the log
                pending.attachment = LogAttachment(container.log_path, self._run_log_start.get(container.id))
            pending.ready.set()

    def resize(self, name: str, height: int, width: int) -> None:
        container = self.containers.get(name)
        if not container.state.running:
            raise StateError(f"Container {short_id(container.id)} is not running")
        self.exec.resize(container.id, height, width)

    # -- restore ---------------------------------------------------------------------------
    def restore_all(self) -> None:
        """Find containers again after a daemon restart (reference §7.6, with live restore):
        still running ones are re-adopted; ones that exited while the daemon was down get
        their recorded exit status (-127 if none was recorded); with ``restart`` those that
        were running are started again."""
        restart = self.daemon.restart
        for container in self.containers.all():
            if not container.state.running:
                self._release_rootfs_of_interrupted_start(container)
                continue
            with container.lock:
                try:
                    running = self._restore(container)
                except Exception:
                    log.exception("could not restore %s", short_id(container.id))
                    running = False
                    container.state.running = False
                    container.state.exit_code = -127
                    container.exited.set()
                    container.cleaned.set()
                    self.containers.save(container)
                # ``-r`` restarts every container that was running; a restart policy its own
                if running or not (restart or self._policy_restarts(container, container.state.exit_code)):
                    continue
                try:
                    link_env, link_hosts = self._register_links(container, container.host_config)
                    self._start(container, link_env, link_hosts)
                except Exception:
                    log.exception("could not restart %s", short_id(container.id))

    def _release_rootfs_of_interrupted_start(self, container: Container) -> None:
        """A daemon killed during a start, after the rootfs was mounted and before the state
        said running, left the mount behind (bench/soak.py found it): a ``get`` and a ``put``
        hand it back to the graph driver, which unmounts a layer at zero references."""
        try:
            self.graph.get(container.id)
            self.graph.put(container.id)
        except Exception:
            log.warning("could not release the rootfs of %s", short_id(container.id), exc_info=True)

    def _restore(self, container: Container) -> bool:
        exec_name = container.internal.get("ExecDriver")
        if exec_name != self.exec.name:
            raise StateError(f"container {short_id(container.id)} was started by exec driver {exec_name!r}")
        rootfs = self.graph.get(container.id)
        spec = self.spec(container, rootfs, [], [], True)
        try:
            running = self.exec.restore(spec)
        except BaseException:
            self.graph.put(container.id)
            raise
        if running:
            if not container.state.pid:  # the daemon died before the start's second save
                pids = self.exec.processes(container.id)
                container.state.pid = pids[0] if pids else 0
            network = self.network
            lost = None
            if network is not None and container.internal.get("NetworkDriver") == network.name:
                try:
                    network.restore(container.id, endpoint_from_json(container.internal.get("Endpoint") or {}))
                except Exception as exc:  # a published port taken while the daemon was down (Conflict)
                    lost = exc
            container.exited.clear()
            container.cleaned.clear()
            self._monitor(container)
            if lost is not None:
                # re-adopted only to be killed: the exit then releases its rootfs, network and
                # cgroups as any exit does (bench/soak.py found them orphaned)
                log.error("container %s: its network could not be restored (%s); it is killed",
                          short_id(container.id), lost)
                container.stop_requested = True
                self._thaw(container)
                self._signal(container, signals.SIGKILL)
            return True
        try:
            code = self.exec.wait(container.id, timeout=0)
        except NotFound:  # a daemon killed during start: the process never ran
            code = None
        self._record_exit(container, -127 if code is None else code)
        return False


class LogAttachment(Attachment):
    """The output of a run that ended before its waiting client could attach, from the log."""

    def __init__(self, path: Path, since: LogPosition | None) -> None:
        self._entries = read_log(path, since=since)  # streamed from disk

    def read(self) -> tuple[Stream, bytes] | None:
        entry = next(self._entries, None)
        if entry is None:
            return None
        return (Stream.STDERR if entry.stream == "stderr" else Stream.STDOUT), entry.log.encode()

    def write(self, data: bytes) -> None:
        raise StateError("the container is not running")

    def close_stdin(self) -> None:
        pass

    def close(self) -> None:
        self._entries.close()


class PendingAttach:
    """An attach waiting for its container to start."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.attachment: Attachment | None = None
        self.cancelled = False

    def wait(self, timeout: float | None = None) -> Attachment | None:
        self.ready.wait(timeout)
        return self.attachment

    def cancel(self) -> None:
        self.cancelled = True
        self.ready.set()
        if self.attachment is not None:
            self.attachment.close()



@dataclass
class StreamSource:
    """An attach's stream (``Runner.attach_stream``): a running container's ``attachment``, or
    the ``pending`` attachment of its next start, or neither (it has just ended). ``log_end``
    is where the log ended when this was decided: a replay of the log (``logs=1``) stops
    there, and what comes after is the stream's."""

    log_end: LogPosition
    attachment: Attachment | None = None
    pending: PendingAttach | None = None

    def close(self) -> None:
        """The attach is over: a pending one is cancelled (a later start attaches nobody), and
        the attachment, given now or by a start meanwhile, closed (closing twice is harmless)."""
        if self.pending is not None:
            self.pending.cancel()
        if self.attachment is not None:
            self.attachment.close()

def requested_ports(config: dict, hc: dict) -> dict[str, list[PortBinding]]:
    """Every exposed port, with the bindings asked for; PublishAllPorts gives unbound ones a
    random port (reference §3.1)."""
    ports: dict[str, list[PortBinding]] = {}
    bindings = hc["PortBindings"] or {}
    for key in config["ExposedPorts"] or {}:
        asked = bindings.get(key) or []
        made = []
        for b in asked:
            host_port = str((b or {}).get("HostPort") or "0")
            if not host_port.isdigit() or int(host_port) > 65535:
                raise InvalidParameter(f"Bad parameter: invalid host port {host_port!r} for {key}")
            made.append(PortBinding(host_ip=(b or {}).get("HostIp") or "", host_port=int(host_port)))
        if not made and hc["PublishAllPorts"]:
            made = [PortBinding()]
        ports[key] = made
    return ports


def network_settings(endpoint: Endpoint) -> dict:
    ports = None
    if endpoint.ports:
        ports = {k: ([{"HostIp": b.host_ip, "HostPort": str(b.host_port)} for b in v] if v else None)
                 for k, v in endpoint.ports.items()}
    return {"IPAddress": endpoint.ip_address, "IPPrefixLen": endpoint.ip_prefix_len, "Gateway": endpoint.gateway,
            "Bridge": endpoint.bridge, "PortMapping": None, "Ports": ports}


def endpoint_to_json(endpoint: Endpoint) -> dict:
    return {"ip_address": endpoint.ip_address, "ip_prefix_len": endpoint.ip_prefix_len,
            "gateway": endpoint.gateway, "bridge": endpoint.bridge,
            "ports": {k: ([[b.host_ip, b.host_port] for b in v] if v is not None else None)
                      for k, v in endpoint.ports.items()}}


def endpoint_from_json(data: dict) -> Endpoint:
    return Endpoint(ip_address=data.get("ip_address", ""), ip_prefix_len=data.get("ip_prefix_len", 0),
                    gateway=data.get("gateway", ""), bridge=data.get("bridge", ""),
                    ports={k: ([PortBinding(ip, port) for ip, port in v] if v is not None else None)
                           for k, v in (data.get("ports") or {}).items()})


def link_environment(alias: str, path: str, ip: str, child: Container) -> list[str]:
    """The variables a link injects (reference §3.2)."""
    prefix = alias.upper()
    env = []
    exposed = sorted(child.config.get("ExposedPorts") or {},
                     key=lambda k: (int(k.split("/")[0]), k.split("/")[1] != "tcp"))
    if exposed:
        number, _, proto = exposed[0].partition("/")
        env.append(f"{prefix}_PORT={proto}://{ip}:{number}")
    for key in exposed:
        number, _, proto = key.partition("/")
        base = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [f"{base}={proto}://{ip}:{number}", f"{base}_ADDR={ip}", f"{base}_PORT={number}",
                f"{base}_PROTO={proto}"]
    env.append(f"{prefix}_NAME={path}")
    for entry in child.config.get("Env") or []:
        parts = entry.split("=")
        if len(parts) == 2 and parts[0] not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{parts[0]}={parts[1]}")
    return env
