"""Finding containers again after a daemon restart (reference §7.6, with live restore): still
running ones are re-adopted; ones that exited while the daemon was down get their recorded
exit status (-127 if none was recorded); with ``restart`` those that were running are started
again, and a restart policy starts its own."""

from __future__ import annotations

import logging
import signal as signals
from collections.abc import Callable

from moorage.core.sdk.errors import NotFound, StateError
from moorage.core.sdk.hookspecs.network import Endpoint
from moorage.core.sdk.ids import short_id
from moorage.core.services.container import Container
from moorage.core.services.container_exits import ExitHandler, policy_restarts
from moorage.core.services.container_start import Starter
from moorage.core.services.run_environment import RunEnvironment

log = logging.getLogger(__name__)


class Restorer:
    def __init__(self, env: RunEnvironment, starter: Starter, exits: ExitHandler,
                 restart: Callable[[Container], None]) -> None:
        self.env = env
        self.starter = starter
        self.exits = exits
        #: starts a container again, its links registered; the caller holds its lock
        self.restart = restart

    def restore_all(self, restart_all: bool) -> None:
        """``restart_all``: the daemon's ``restart`` setting (``-r``), which starts every
        container that was running."""
        for container in self.env.containers.all():
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
                    self.env.containers.save(container)
                if running or not (restart_all or policy_restarts(container, container.state.exit_code)):
                    continue
                try:
                    self.restart(container)
                except Exception:
                    log.exception("could not restart %s", short_id(container.id))

    def _release_rootfs_of_interrupted_start(self, container: Container) -> None:
        """A daemon killed during a start, after the rootfs was mounted and before the state
        said running, left the mount behind (bench/soak.py found it): a ``get`` and a ``put``
        hand it back to the graph driver, which unmounts a layer at zero references."""
        try:
            self.env.graph.get(container.id)
            self.env.graph.put(container.id)
        except Exception:
            log.warning("could not release the rootfs of %s", short_id(container.id), exc_info=True)

    def _restore(self, container: Container) -> bool:
        exec_driver = self.env.exec
        exec_name = container.internal.exec_driver
        if exec_name != exec_driver.name:
            raise StateError(f"container {short_id(container.id)} was started by exec driver {exec_name!r}")
        rootfs = self.env.graph.get(container.id)
        spec = self.starter.spec(container, rootfs, [], [], True)
        try:
            running = exec_driver.restore(spec)
        except BaseException:
            self.env.graph.put(container.id)
            raise
        if running:
            self._readopt(container)
            return True
        try:
            code = exec_driver.wait(container.id, timeout=0)
        except NotFound:  # a daemon killed during start: the process never ran
            code = None
        self.exits.record_exit(container, -127 if code is None else code)
        return False

    def _readopt(self, container: Container) -> None:
        if not container.state.pid:  # the daemon died before the start's second save
            pids = self.env.exec.processes(container.id)
            container.state.pid = pids[0] if pids else 0
        network = self.env.network
        lost = None
        if network is not None and container.internal.network_driver == network.name:
            try:
                network.restore(container.id, container.internal.endpoint or Endpoint())
            except Exception as exc:  # a published port taken while the daemon was down (Conflict)
                lost = exc
        container.exited.clear()
        container.cleaned.clear()
        self.exits.monitor(container)
        if lost is not None:
            # re-adopted only to be killed: the exit then releases its rootfs, network and
            # cgroups as any exit does (bench/soak.py found them orphaned)
            log.error("container %s: its network could not be restored (%s); it is killed",
                      short_id(container.id), lost)
            container.stop_requested = True
            self.env.thaw(container)
            self.env.signal(container, signals.SIGKILL)
