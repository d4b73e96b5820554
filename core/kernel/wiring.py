"""What the daemon is made of, and the order it starts and stops in.

``Kernel.start`` (``core/kernel/kernel.py``) runs these steps, in this order:

1. take the root directory's lock (``moorage.lock``);
2. load the plugins of the ``moorage`` entry-point group; a ``moorage_*`` hookimpl that no
   hookspec declares (a misspelling) stops the daemon here, naming the plugin and the hook;
3. select one driver per family (``Drivers``): graph, exec, network, registry, volume (the
   default volume driver; every other registered volume driver that works here serves too);
4. open the name registry (``linkgraph.db``);
5. ``start_services``: the image service, the distribution service (pull, push), the
   container service, the runner, which re-adopts the containers that outlived the last
   daemon. Each is built from exactly the drivers, stores and hook callers it uses;
6. ``start_features``: the feature plugins (``moorage_feature_register``: the builder), each
   given the services; they contribute API routes;
6b. ``start_volumes``: the named volumes (``/volumes``) over the volume drivers;
7. tell plugins the configuration is final (``moorage_daemon_configured``).

Then the API listens. ``Kernel.shutdown`` undoes it in reverse: ``stop_features``, each driver's
``cleanup`` (every volume driver's), the name registry, the thread pools, the lock. Containers keep running.

Without a graph driver there are no images, containers or runner (their endpoints answer that
no graph driver is available); without a registry driver there is no distribution service;
without an exec driver containers can be made but not run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from moorage.core.kernel.config import DaemonConfig
from moorage.core.kernel.features import Feature, Services
from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.pools import Executor
from moorage.core.sdk.driver import Driver
from moorage.core.sdk.errors import PluginError
from moorage.core.sdk.hookspecs import DRIVER_FAMILIES
from moorage.core.sdk.hookspecs.exec import ExecDriver
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.core.sdk.hookspecs.network import NetworkDriver
from moorage.core.sdk.hookspecs.registry import RegistryClient
from moorage.core.sdk.hookspecs.volume import VolumeDriver
from moorage.core.sdk.logs import LogRotation
from moorage.core.sdk.security import SecurityPolicy
from moorage.core.services.containers import ContainerDrivers, ContainerService
from moorage.core.services.distribution import Distribution
from moorage.core.services.events import EventBus
from moorage.core.services.images import ImageService, ImageUsers
from moorage.core.services.named_volumes import NamedVolumes
from moorage.core.services.names import NameRegistry
from moorage.core.services.runner import Runner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drivers:
    """The selected driver of each family; None where no driver could be selected."""

    graph: GraphDriver | None = None
    exec: ExecDriver | None = None
    network: NetworkDriver | None = None
    registry: RegistryClient | None = None
    #: the default volume driver (the others that serve are ``NamedVolumes.drivers``)
    volume: VolumeDriver | None = None

    def by_family(self) -> dict[str, Driver | None]:
        """Family name -> driver, in ``DRIVER_FAMILIES`` order, for the families that select one
        driver (``/info``'s ``Drivers``): every volume driver serves, so that family is not here."""
        selected = {"graph": self.graph, "exec": self.exec, "network": self.network, "registry": self.registry}
        return {family: selected[family] for family in DRIVER_FAMILIES if family in selected}


def start_services(root: Path, version: str, config: DaemonConfig, drivers: Drivers, names: NameRegistry,
                   events: EventBus, hooks: LifecycleHooks, executor: Executor) -> Services:
    """Build the services in dependency order; the runner restores the containers that outlived
    the last daemon (live restore), so this may take a while when many did."""
    if drivers.graph is None:
        log.warning("no graph driver: images and containers are unavailable")
        return Services()
    # the one thing images need to know about containers: which images they are built on
    users = ImageUsers()
    images = ImageService(root, drivers.graph, version=version, hooks=hooks, events=events, users=users)
    distribution = Distribution(drivers.registry, images, hooks) if drivers.registry is not None else None
    containers = ContainerService(root, images, users, names,
                                  ContainerDrivers(drivers.graph, drivers.network, drivers.exec),
                                  events, hooks, executor)
    runner = Runner(containers, drivers.exec, drivers.network, config.daemon,
                    SecurityPolicy(**config.security.model_dump()),
                    LogRotation(config.logs.max_size, config.logs.max_file), hooks, executor)
    if drivers.exec is not None:
        runner.restore_all()
    return Services(images=images, distribution=distribution, containers=containers, runner=runner)


def start_volumes(default: VolumeDriver | None, others: list[VolumeDriver], events: EventBus) -> NamedVolumes | None:
    """The named volumes over the default volume driver and the ``others`` that work here;
    None without a default (``/volumes`` then answers that no volume driver is available)."""
    if default is None:
        log.warning("no volume driver: volumes are unavailable")
        return None
    return NamedVolumes({d.name: d for d in [default, *others]}, default.name, events)


def start_features(classes: list[type[Feature]], services: Services, root: Path,
                   executor: Executor) -> tuple[Feature, ...]:
    """One instance of each registered feature class, in name order; a feature whose
    constructor fails stops the daemon with its name."""
    features = []
    for cls in sorted(classes, key=lambda c: c.name):
        try:
            features.append(cls(services, root / cls.name, executor))
        except Exception as exc:
            stop_features(tuple(features))
            raise PluginError(f"feature plugin {cls.name!r} ({cls.__module__}.{cls.__qualname__}) failed to "
                              f"start: {type(exc).__name__}: {exc}") from exc
        log.info("feature: %s", cls.name)
    return tuple(features)


def stop_features(features: tuple[Feature, ...]) -> None:
    for feature in reversed(features):
        try:
            feature.close()
        except Exception:
            log.exception("feature plugin %r failed to stop", feature.name)
