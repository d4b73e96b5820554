"""Lifecycle notifications: how core tells plugins what happened to containers and images.

Every lifecycle hook is called through ``LifecycleHooks.notify``, which calls each plugin's
hookimpl on its own: a hook that raises is logged with the plugin's name and the others still
run. A notification never changes the outcome of the request that caused it and never skips
a state write (the hookspec module's promise, ``moorage.core.sdk.hookspecs.lifecycle``). A call
with no hookimpl costs one list lookup, so the container cycle pays nothing for hooks nobody
implements (the values, a deep copy of a config among them, are built only when needed).
"""

from __future__ import annotations

import copy
import logging

import pluggy

from moorage.core.kernel.config import DaemonConfig

log = logging.getLogger(__name__)


class LifecycleHooks:
    """The daemon's lifecycle hook callers, each a typed method; built from the plugin
    manager's hook relay at start."""

    def __init__(self, relay: pluggy.HookRelay) -> None:
        self._relay = relay

    @staticmethod
    def notify(caller: pluggy.HookCaller, **values: object) -> None:
        """Call every hookimpl of ``caller`` with the values it asks for (most recently
        registered first, as pluggy does); log and go on when one raises."""
        for impl in reversed(caller.get_hookimpls()):
            try:
                impl.function(*[values[name] for name in impl.argnames])
            except Exception:
                log.exception("plugin %r failed in %s; the action it was told about stands",
                              impl.plugin_name, caller.name)

    def container_created(self, container_id: str, config: dict, created: str, duration: float,
                          graph_driver: str) -> None:
        caller = self._relay.moorage_container_created
        if caller.get_hookimpls():
            self.notify(caller, container_id=container_id, config=copy.deepcopy(config), created=created,
                        duration=duration, graph_driver=graph_driver)

    def container_started(self, container_id: str, pid: int, started: str, duration: float, exec_driver: str,
                          network_driver: str, graph_driver: str) -> None:
        caller = self._relay.moorage_container_started
        if caller.get_hookimpls():
            self.notify(caller, container_id=container_id, pid=pid, started=started, duration=duration,
                        exec_driver=exec_driver, network_driver=network_driver, graph_driver=graph_driver)

    def container_died(self, container_id: str, exit_code: int, finished: str, run_time: float,
                       exec_driver: str, network_driver: str) -> None:
        caller = self._relay.moorage_container_died
        if caller.get_hookimpls():
            self.notify(caller, container_id=container_id, exit_code=exit_code, finished=finished,
                        run_time=run_time, exec_driver=exec_driver, network_driver=network_driver)

    def container_destroyed(self, container_id: str) -> None:
        self.notify(self._relay.moorage_container_destroyed, container_id=container_id)

    def image_pulled(self, name: str, tag: str, image_id: str) -> None:
        self.notify(self._relay.moorage_image_pulled, name=name, tag=tag, image_id=image_id)

    def image_deleted(self, image_id: str) -> None:
        self.notify(self._relay.moorage_image_deleted, image_id=image_id)

    def daemon_configured(self, config: DaemonConfig) -> None:
        caller = self._relay.moorage_daemon_configured
        if caller.get_hookimpls():
            self.notify(caller, config=config.without_credentials())


def no_hooks() -> LifecycleHooks:
    """Lifecycle hooks with no plugin behind them, for services built without a daemon (unit
    tests, embedding code)."""
    from moorage.core.sdk.hookspecs import PROJECT, lifecycle

    manager = pluggy.PluginManager(PROJECT)
    manager.add_hookspecs(lifecycle)
    return LifecycleHooks(manager.hook)
