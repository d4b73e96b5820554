"""The kernel: the daemon's state wired together (config, plugins, selected drivers, stores).

One ``Kernel`` per daemon. The API reaches everything through it, so that each endpoint
dispatches through core to the registered plugins. Blocking work (mounts, ioctls, tar
extraction, waiting on processes) goes through ``run_blocking``, the executor core chooses.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import __version__
from .config import FAMILIES, DaemonConfig
from .driver import Driver
from .errors import ConfigError, NotSupported
from .events import EventBus
from .names import NameRegistry
from .plugins import PluginManager
from .store import DaemonLock, ensure_dir

log = logging.getLogger(__name__)
T = TypeVar("T")


class Kernel:
    def __init__(self, config: DaemonConfig, plugins: PluginManager | None = None) -> None:
        self.config = config
        self.version = __version__
        self.root: Path = config.daemon.root
        self.plugins = plugins or PluginManager()
        self.events = EventBus()
        self.drivers: dict[str, Driver | None] = dict.fromkeys(FAMILIES)
        self.names: NameRegistry | None = None
        self._lock = DaemonLock(self.root)
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="moorage")
        # calls that block until something happens (a container exits or starts, output comes,
        # a pull or build runs): apart, so that clients waiting cannot starve everyone else
        self._waiting_executor = concurrent.futures.ThreadPoolExecutor(max_workers=2048,
                                                                       thread_name_prefix="moorage-wait")
        #: services added by core modules as they are set up (images, containers...)
        self.services: dict[str, Any] = {}
        self._started = False

    # -- start and stop -------------------------------------------------------------------
    def start(self, load_entry_points: bool = True) -> None:
        """Take the root lock, load plugins, select one driver per family."""
        ensure_dir(self.root)
        self._lock.acquire()
        try:
            if load_entry_points:
                self.plugins.load_entry_points(self.config.plugins.blocked, self.config.plugins.enable)
            self.plugins.collect_drivers()
            for family in FAMILIES:
                self.drivers[family] = self._select(family)
            self.names = NameRegistry(self.root / "linkgraph.db")
            self._setup_services()
            self.plugins.hook.moorage_daemon_configured(config=self.config.redacted())
        except BaseException:
            self._lock.release()
            raise
        self._started = True

    def _select(self, family: str) -> Driver | None:
        section = self.config.family(family)
        registered = self.plugins.families[family]
        if not registered.names() and not section.driver:
            log.warning("no %s driver is registered; features that need one are unavailable", family)
            return None
        context = self.config.driver_context(family, self.root)
        driver = registered.select(section.driver, section.priority, self.root, section.driver_sections(),
                                   context, self.config.where(family, "driver"))
        log.info("%s driver: %s", family, driver.name)
        return driver

    def _setup_services(self) -> None:
        """The image and container services need a graph driver; without one the daemon still
        answers the system endpoints."""
        if self.drivers["graph"] is None:
            return
        from . import containers, distribution, images, runner

        images.setup(self)
        if self.drivers["registry"] is not None:
            distribution.setup(self)
        containers.setup(self)
        run = runner.setup(self)
        if self.drivers["exec"] is not None:
            run.restore_all()

    def shutdown(self) -> None:
        if not self._started:
            return
        self._started = False
        for family, driver in self.drivers.items():
            cleanup = getattr(driver, "cleanup", None)
            if cleanup is None:
                continue
            try:
                cleanup()
            except Exception:
                log.exception("cleanup of %s driver %s failed", family, driver.name)
        if self.names is not None:
            self.names.close()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._waiting_executor.shutdown(wait=False, cancel_futures=True)
        self._lock.release()

    # -- helpers for core modules and the API ---------------------------------------------
    def driver(self, family: str) -> Driver:
        """The selected driver of ``family``; NotSupported if none could be selected."""
        driver = self.drivers.get(family)
        if driver is None:
            raise NotSupported(f"no {family} driver is available in this daemon")
        return driver

    async def run_blocking(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def run_waiting(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """As ``run_blocking``, for calls that may block for as long as a container runs."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._waiting_executor, functools.partial(fn, *args, **kwargs))

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        return self._executor.submit(fn, *args, **kwargs)

    def submit_waiting(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        """As ``submit``, for long-running jobs (pulls, pushes, builds)."""
        return self._waiting_executor.submit(fn, *args, **kwargs)


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
