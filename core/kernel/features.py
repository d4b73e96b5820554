"""Feature plugins: what the daemon does on top of its services, beyond the drivers (the
image builder behind ``POST /build`` is one).

A feature plugin registers ``Feature`` classes with ``moorage_feature_register``, from a module
named in the ``moorage`` entry-point group of its distribution, exactly as a driver does;
``[plugins] blocked = ["<entry point>"]`` turns it off, and its routes then answer 404 like any
unknown path. At start, after the services, the daemon makes one instance of each class, in
name order, and serves the routes it contributes beside the core route table (a route the
table already has is refused, naming the feature). At shutdown each is closed, in reverse.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from moorage.core.kernel.pools import Executor
from moorage.core.sdk.hookspecs import hookspec
from moorage.core.services.containers import ContainerService
from moorage.core.services.distribution import Distribution
from moorage.core.services.images import ImageService
from moorage.core.services.runner import Runner


@dataclass(frozen=True)
class Services:
    """The services the API's handlers and the feature plugins call (``kernel.wiring`` builds
    them); a service is None when the driver it needs is missing."""

    images: ImageService | None = None
    distribution: Distribution | None = None
    containers: ContainerService | None = None
    runner: Runner | None = None


@dataclass(frozen=True)
class FeatureRoute:
    """One endpoint a feature serves: ``method`` and an unversioned ``path`` as in the core
    route table (``/vX.Y`` prefixes are served too), and a FastAPI endpoint (an async callable
    whose parameters FastAPI fills, such as ``request: Request``)."""

    method: str
    path: str
    endpoint: Callable[..., Awaitable[Any]]


class Feature(abc.ABC):
    """A feature of the daemon, built on its services. A complete minimal plugin::

        from fastapi.responses import PlainTextResponse
        from moorage.core.sdk.hookspecs import hookimpl
        from moorage.core.kernel.features import Feature, FeatureRoute

        class Count(Feature):
            name = "count"

            def routes(self):
                return [FeatureRoute("GET", "/count", self.count)]

            async def count(self):
                return PlainTextResponse(str(len(self.services.containers or ())))

        @hookimpl
        def moorage_feature_register():
            return [Count]
    """

    #: the feature's name, unique among features (its state directory under the daemon root)
    name: ClassVar[str] = ""

    def __init__(self, services: Services, home: Path, executor: Executor) -> None:
        """Called once at start, after the services. ``services``: the daemon's services (a
        service is None when its driver is missing, and a feature must then answer plainly
        that it is unavailable, not fail at start); ``home``: ``<root>/<name>``, created on
        first use by the feature itself; ``executor``: the thread pools blocking work runs in.
        An exception stops the daemon with the feature's name."""
        self.services = services
        self.home = home
        self.executor = executor

    @abc.abstractmethod
    def routes(self) -> list[FeatureRoute]:
        """The endpoints this feature serves; called once, when the API app is made."""

    def close(self) -> None:  # noqa: B027 (optional: most features hold nothing to release)
        """Release what the feature holds; called once at shutdown, errors are logged."""


@hookspec
def moorage_feature_register() -> list[type[Feature]]:
    """Register feature classes.

    :return: a list of ``Feature`` subclasses (each with a unique ``name``), or None.

    Called once at start, after the drivers are selected; a name registered twice, or a
    return value that is not a list of ``Feature`` classes, stops the daemon naming the plugin.
    """
