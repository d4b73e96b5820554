"""Running containers: the operations the API calls (start, stop, kill, restart, wait, pause,
stats, attach, resize) and restore after a daemon restart. Each concern is a module of its
own: ``container_start`` (a start and its undo), ``container_exits`` (monitors, exit, restart
policy, AutoRemove), ``container_streams`` (attach), ``container_restore``, ``links``."""

from __future__ import annotations

import signal as signals
import time

from moorage.core.kernel.config import DaemonSection
from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.pools import Executor
from moorage.core.sdk.errors import NotFound, StateError
from moorage.core.sdk.hookspecs.exec import Attachment, ExecDriver, ResourceUsage
from moorage.core.sdk.hookspecs.network import NetworkDriver
from moorage.core.sdk.ids import short_id
from moorage.core.sdk.logs import LogRotation
from moorage.core.sdk.security import SecurityPolicy
from moorage.core.services import container_config
from moorage.core.services.container import Container
from moorage.core.services.container_exits import ExitHandler
from moorage.core.services.container_restore import Restorer
from moorage.core.services.container_start import Starter
from moorage.core.services.container_streams import AttachStreams, LogAttachment, PendingAttach, StreamSource
from moorage.core.services.containers import ContainerService
from moorage.core.services.exec_instances import ExecService
from moorage.core.services.links import register_links
from moorage.core.services.run_environment import RunEnvironment
from moorage.core.services.volumes import VolumeManager

__all__ = ["DEFAULT_STOP_TIMEOUT", "LogAttachment", "PendingAttach", "Runner", "StreamSource"]

DEFAULT_STOP_TIMEOUT = 10


class Runner:
    def __init__(self, containers: ContainerService, exec_driver: ExecDriver | None, network: NetworkDriver | None,
                 daemon: DaemonSection, security: SecurityPolicy, log_rotation: LogRotation,
                 hooks: LifecycleHooks, executor: Executor) -> None:
        self.containers = containers
        self.env = RunEnvironment(containers, exec_driver, network, hooks)
        #: the daemon's settings this service reads: ``dns`` and ``restart``
        self.daemon = daemon
        self.volumes = VolumeManager(containers.root, containers)
        #: ``docker exec`` instances (``core/services/exec_instances.py``)
        self.execs = ExecService(containers, exec_driver)
        self.streams = AttachStreams(self.env)
        self.exits = ExitHandler(self.env, executor, restart=self._start_linked)
        self.starter = Starter(self.env, daemon, security, log_rotation, self.streams, self.volumes,
                               monitor=self.exits.monitor)
        self.restorer = Restorer(self.env, self.starter, self.exits, restart=self._start_linked)

    @property
    def exec(self) -> ExecDriver:
        return self.env.exec

    def _start_linked(self, container: Container) -> None:
        """Start a run, the container's links registered first; the caller holds its lock."""
        link_env, link_hosts = register_links(self.containers, container)
        self.starter.start(container, link_env, link_hosts)

    # -- start -----------------------------------------------------------------------------
    def start(self, name: str, host_config: dict | None = None) -> None:
        began = time.monotonic()
        container = self.containers.get(name)
        new_config = None
        if host_config is not None:  # it replaces the saved one (create's), as in Docker
            container_config.check_supported(host_config, "start")
            new_config = container_config.normalize_host_config(host_config)
            container_config.validate_host(new_config)
        with container.lock:
            if container.removed:
                raise NotFound(f"No such container: {name}")
            if container.state.running:
                raise StateError(f"Cannot start container {name}: The container {container.id} is already running.")
            if new_config is not None:
                container.host_config = new_config
            container.stop_requested = False
            container.internal.restart_count = None
            link_env, link_hosts = register_links(self.containers, container)
            self.starter.start(container, link_env, link_hosts, durable=new_config is not None, began=began)
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
        self.env.thaw(container)
        self.env.signal(container, signals.SIGTERM)
        if not container.exited.wait(timeout):
            self.env.signal(container, signals.SIGKILL)
            container.exited.wait()

    def kill(self, name: str, signum: int = 0) -> None:
        """Signals need no lock: a kill must get through while a long stop holds it."""
        container = self.containers.get(name)
        if not container.state.running:
            return
        if signum:
            self.env.signal(container, signum)
            return
        container.stop_requested = True
        self.env.thaw(container)
        self.env.signal(container, signals.SIGKILL)
        container.exited.wait()
        self.containers.publish("kill", container)

    def restart(self, name: str, timeout: int = DEFAULT_STOP_TIMEOUT) -> None:
        container = self.containers.get(name)
        if timeout < 0:
            timeout = DEFAULT_STOP_TIMEOUT
        with container.lock:
            self._stop(container, timeout)
            container.stop_requested = False
            self._start_linked(container)
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

    # -- pause, unpause, stats, resize -----------------------------------------------------
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

    def stats(self, name: str) -> tuple[Container, ResourceUsage]:
        container = self._running(name)
        return container, self.exec.stats(container.id)

    def resize(self, name: str, height: int, width: int) -> None:
        self.exec.resize(self._running(name).id, height, width)

    def _running(self, name: str) -> Container:
        container = self.containers.get(name)
        if not container.state.running:
            raise StateError(f"Container {short_id(container.id)} is not running")
        return container

    # -- attach ----------------------------------------------------------------------------
    def attach(self, name: str) -> tuple[Container, Attachment | None]:
        """An attachment to a running container's stdio, or None if it is not running."""
        container = self.containers.get(name)
        return container, self.streams.attach(container)

    def attach_stream(self, name: str) -> StreamSource:
        """Where an attach's stream comes from (``AttachStreams.attach_stream``)."""
        return self.streams.attach_stream(self.containers.get(name))

    # -- restore ---------------------------------------------------------------------------
    def restore_all(self) -> None:
        """Find containers again after a daemon restart (``container_restore``)."""
        self.restorer.restore_all(self.daemon.restart)
