"""The kernel: the daemon's state wired together (config, plugins, selected drivers, stores,
services, features). core/kernel/wiring.py says what the daemon is made of and in what order it
starts and stops; ``Kernel.start`` and ``Kernel.shutdown`` follow that order.

One ``Kernel`` per daemon. The API reaches the services through typed dependencies
(``moorage.api.http.params``). Blocking work (mounts, ioctls, tar extraction, waiting on
processes) goes through ``run_blocking``, the executor core chooses.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from moorage.core import __version__
from moorage.core.kernel.config import DaemonConfig
from moorage.core.kernel.features import Feature
from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.plugins import PluginManager
from moorage.core.kernel.pools import Executor
from moorage.core.kernel.wiring import (
    Drivers,
    Services,
    start_features,
    start_services,
    start_volumes,
    stop_features,
)
from moorage.core.sdk.driver import Driver
from moorage.core.sdk.errors import ConfigError, NotSupported
from moorage.core.sdk.hookspecs import DRIVER_FAMILIES
from moorage.core.sdk.hookspecs.volume import VolumeDriver
from moorage.core.sdk.store import DaemonLock, ensure_dir
from moorage.core.services.events import EventBus
from moorage.core.services.named_volumes import NamedVolumes
from moorage.core.services.names import NameRegistry

log = logging.getLogger(__name__)
T = TypeVar("T")


class Kernel:
    def __init__(self, config: DaemonConfig, plugins: PluginManager | None = None) -> None:
        self.config = config
        self.version = __version__
        self.root: Path = config.daemon.root
        self.plugins = plugins or PluginManager()
        self.hooks = LifecycleHooks(self.plugins.hook)
        self.events = EventBus()
        self.executor = Executor()
        self.drivers = Drivers()
        self.names: NameRegistry | None = None
        self.services = Services()
        #: the volume drivers besides the default one (``drivers.volume``) that serve
        self.volume_drivers: list[VolumeDriver] = []
        #: ``/volumes``: None without a volume driver
        self.volumes: NamedVolumes | None = None
        self.features: tuple[Feature, ...] = ()
        self._lock = DaemonLock(self.root)
        self._started = False

    # -- start and stop (the order is core/kernel/wiring.py's) ------------------------------------
    def start(self, load_entry_points: bool = True) -> None:
        ensure_dir(self.root)
        self._lock.acquire()
        try:
            if load_entry_points:
                self.plugins.load_entry_points(self.config.plugins.blocked, self.config.plugins.enable)
            self.plugins.check_pending()
            self.plugins.collect_drivers()
            self.drivers = Drivers(**{family: self._select(family) for family in DRIVER_FAMILIES})
            self.names = NameRegistry(self.root / "linkgraph.db")
            self.volume_drivers = self._other_volume_drivers()
            self.volumes = start_volumes(self.drivers.volume, self.volume_drivers, self.events)
            self.services = start_services(self.root, self.version, self.config, self.drivers, self.names,
                                           self.events, self.hooks, self.executor)
            self.features = start_features(self.plugins.collect_features(), self.services, self.root,
                                           self.executor)
            self.hooks.daemon_configured(self.config)
        except BaseException:
            stop_features(self.features)
            if self.names is not None:
                self.names.close()
            self._lock.release()
            raise
        self._started = True

    def _select(self, family: str) -> Driver | None:
        section = self.config.family(family)
        registered = self.plugins.families[family]
        if not registered.names() and not section.driver:
            log.warning("no %s driver is registered; features that need one are unavailable", family)
            return None
        settings = self.config.driver_settings(family, self.root)
        driver = registered.select(section.driver, section.priority, self.root, section.driver_sections(),
                                   settings, self.config.where(family, "driver"))
        log.info("%s driver: %s", family, driver.name)
        return driver

    def _other_volume_drivers(self) -> list[VolumeDriver]:
        """Every registered volume driver but the default that works here: one that cannot
        (``NotSupported``) or fails to start is left out and logged, never fatal."""
        if self.drivers.volume is None:
            return []
        section = self.config.family("volume")
        registered = self.plugins.families["volume"]
        settings = self.config.driver_settings("volume", self.root)
        others = []
        for name in registered.names():
            if name == self.drivers.volume.name:
                continue
            try:
                others.append(registered.create(name, self.root, section.driver_sections().get(name, {}), settings,
                                                self.config.driver_section_error("volume", name)))
            except NotSupported as exc:
                log.info("volume driver %s not supported here: %s", name, exc)
            except Exception:
                log.exception("volume driver %s failed to start; its volumes are unavailable", name)
        return others

    def shutdown(self) -> None:
        if not self._started:
            return
        self._started = False
        stop_features(self.features)
        volume = [("volume", d) for d in ([self.drivers.volume] if self.drivers.volume else []) + self.volume_drivers]
        for family, driver in [*self.drivers.by_family().items(), *volume]:
            if driver is None:
                continue
            try:
                driver.cleanup()
            except Exception:
                log.exception("cleanup of %s driver %s failed", family, driver.name)
        if self.names is not None:
            self.names.close()
        self.executor.shutdown()
        self._lock.release()

    # -- the executor, for the API's handlers ---------------------------------------------
    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await self.executor.run_blocking(fn, *args, **kwargs)

    async def run_waiting(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """As ``run_blocking``, for calls that may block for as long as a container runs."""
        return await self.executor.run_waiting(fn, *args, **kwargs)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        return self.executor.submit(fn, *args, **kwargs)

    def submit_waiting(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """As ``submit``, for long-running jobs (pulls, pushes, builds)."""
        return self.executor.submit_waiting(fn, *args, **kwargs)


def check_pidfile(path: Path | None) -> None:
    """Refuse to start when the pidfile names a live process (Docker's rule)."""
    if path is None:
        return
    try:
        pid = int(Path(path).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return
    if pid and pid != os.getpid() and Path(f"/proc/{pid}").exists():
        raise ConfigError(f"pid file found, ensure moorage is not running or delete {path}")
