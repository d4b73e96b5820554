"""A run's end: each running container has a monitor thread that waits on the exec driver and
records the exit (state, network, rootfs, events, hooks); then the host config's
``RestartPolicy`` or ``AutoRemove`` is carried out."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from moorage.core.kernel.pools import Executor
from moorage.core.sdk.errors import NotFound
from moorage.core.sdk.ids import short_id
from moorage.core.services.container import Container
from moorage.core.services.container_model import NetworkSettings, RestartPolicy
from moorage.core.services.images import format_time, parse_time
from moorage.core.services.run_environment import RunEnvironment

log = logging.getLogger(__name__)


def policy_restarts(container: Container, exit_code: int) -> bool:
    """Whether the container's restart policy starts it again after this exit."""
    policy = container.host_config.restart_policy or RestartPolicy()
    count = container.internal.restart_count or 0
    return policy.name in ("always", "unless-stopped") or (
        policy.name == "on-failure" and exit_code != 0
        and (not policy.maximum_retry_count or count < policy.maximum_retry_count))


class Watchers:
    """Runs each call in a thread of its own, reusing a thread whose call has returned.

    A running container's watch holds a thread for its whole run, so no pool of fixed size
    fits; but starting a thread waits for it to run, which cost every start 0.5-1 ms
    (docs/benchmarks.md). A thread that finished a watch waits ``IDLE_SECONDS`` for the next
    one, then ends.
    """

    IDLE_SECONDS = 30.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: the inboxes of the threads waiting for a call
        self._idle: list[queue.SimpleQueue] = []

    def run(self, call: Callable[[], None], name: str) -> None:
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name=name, daemon=True).start()
        inbox.put((call, name))

    def _serve(self, inbox: queue.SimpleQueue) -> None:
        while True:
            try:
                call, name = inbox.get(timeout=self.IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if inbox in self._idle:
                        self._idle.remove(inbox)
                        return
                continue  # taken from the idle list just now: its call is on the way
            threading.current_thread().name = name
            try:
                call()
            except Exception:
                log.exception("%s failed", name)
            with self._lock:
                self._idle.append(inbox)


class ExitHandler:
    def __init__(self, env: RunEnvironment, executor: Executor, restart: Callable[[Container], None]) -> None:
        self.env = env
        #: restart policies and AutoRemove run here, after a container's exit
        self.executor = executor
        #: starts a container again, its links registered; the caller holds its lock
        self.restart = restart
        #: the threads that watch running containers
        self.watchers = Watchers()

    def monitor(self, container: Container) -> None:
        self.watchers.run(lambda: self._watch(container), f"monitor-{container.id[:12]}")

    def _watch(self, container: Container) -> None:
        exit_code = None
        try:
            exit_code = self.env.exec.wait(container.id)
        except Exception:
            log.exception("waiting on %s failed", short_id(container.id))
        self.record_exit(container, -1 if exit_code is None else exit_code)

    def record_exit(self, container: Container, exit_code: int) -> None:
        """Record the exit (``wait`` returns from here on), then release what the run held."""
        state = container.state
        state.running, state.pid, state.ghost, state.paused = False, 0, False, False
        state.exit_code = exit_code
        state.finished_at = format_time()
        container.network = NetworkSettings()
        # ``wait`` (and then ``remove``) go on before the save: the exec driver recorded the exit
        # before it told us, so a daemon killed before the save learns it again at restart
        self.env.containers.publish("die", container, exitCode=str(exit_code))  # before ``stop``'s event
        container.exited.set()
        self._release(container)
        container.cleaned.set()
        # before the save, which may wait for a new start of the container (its lock); a hook
        # that raises is logged by ``notify`` and the save still happens
        began, container.started_monotonic = container.started_monotonic, None
        run_time = (time.monotonic() - began if began is not None
                    else max(0, parse_time(state.finished_at) - parse_time(state.started_at)))
        self.env.hooks.container_died(container.id, exit_code, state.finished_at, run_time,
                                      container.internal.exec_driver or "", container.internal.network_driver or "")
        # under the lock, which a removal or a new start holds: a save writes the state as it
        # is then, so it is never older than what a new start saved
        with container.lock:
            if not container.removed:
                try:
                    self.env.containers.save(container, durable=False)
                except Exception:
                    log.exception("saving the exit of %s", short_id(container.id))
        self._after_exit(container, exit_code)

    def _release(self, container: Container) -> None:
        """The run's network, rootfs and exec driver state, each released even if one fails."""
        network = self.env.network
        joined = network is not None and container.internal.network_driver == network.name
        steps = [lambda: network.leave(container.id)] if joined else []
        steps += [lambda: self.env.graph.put(container.id), lambda: self.env.exec.release(container.id)]
        for step in steps:
            try:
                step()
            except Exception:
                log.exception("cleaning up after %s exited", short_id(container.id))

    def _after_exit(self, container: Container, exit_code: int) -> None:
        """Carry out the host config's ``RestartPolicy`` (not after a stop or kill asked for
        by a client) or ``AutoRemove``, in a worker thread."""
        if container.removed or container.stop_requested:
            if container.host_config.auto_remove and not container.removed:
                self.executor.submit(self._auto_remove, container)
            return
        if policy_restarts(container, exit_code):
            self.executor.submit(self._restart_by_policy, container, container.internal.restart_count or 0)
        elif container.host_config.auto_remove:
            self.executor.submit(self._auto_remove, container)

    def _auto_remove(self, container: Container) -> None:
        try:
            self.env.containers.remove(container.id)
        except NotFound:
            pass
        except Exception:
            log.exception("removing %s (AutoRemove)", short_id(container.id))

    def _restart_by_policy(self, container: Container, count: int) -> None:
        time.sleep(min(0.1 * (2 ** count), 60.0))  # Docker's back-off: 100 ms doubling, at most a minute
        with container.lock:
            if container.removed or container.stop_requested or container.state.running:
                return
            container.internal.restart_count = count + 1
            try:
                self.restart(container)
            except Exception:
                log.exception("restarting %s (RestartPolicy)", short_id(container.id))
                return
        self.env.containers.publish("start", container)
