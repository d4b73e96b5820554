"""What every driver class shares, and the registry that selects drivers by name.

A driver class names itself (``name``), declares its typed config section (``Options``, a
pydantic model), is made with one ``DriverContext`` (its home, its parsed options, the daemon's
settings it may read, its family's settings) and probes its prerequisites in ``__init__``: it
raises ``NotSupported`` when this host cannot run it, which lets auto-selection move on; any
other exception is a failure. ``DriverFamily`` builds every driver of every family this way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from moorage.core.sdk.errors import ConfigError, NotFound, NotSupported, PluginError

log = logging.getLogger(__name__)

_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*", re.IGNORECASE)


def parse_bytes(value: object) -> object:
    """A size as Docker's options spell it: a number of bytes, or ``"10m"``, ``"1.5g"``,
    ``"512KiB"`` (binary units, as Docker's ``max-size``); anything else is left to pydantic."""
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match:
            number, unit = match.groups()
            return int(float(number) * 1024 ** "_kmgtp".index(unit.lower() or "_"))
    return value


#: A byte count in a config file: an integer or a string such as ``"10m"``.
Bytes = Annotated[int, BeforeValidator(parse_bytes), Field(ge=0)]


class NoOptions(BaseModel):
    """A driver without settings; any key in its config section is an error."""

    model_config = ConfigDict(extra="forbid")


class FamilySettings(BaseModel):
    """The family-wide keys of a ``[<family>]`` table (besides ``driver`` and ``priority``) that
    every driver of the family reads; a family that has some declares a subclass (the registry
    family's ``default``). Keys no family declares are left alone."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class DaemonSettings:
    """What of the daemon's own configuration a driver may read (never change)."""

    #: the daemon's root directory (``[daemon] root``, ``-g``); a driver's home is below it
    root: Path
    #: the daemon runs with ``--debug``: a driver may log more
    debug: bool = False
    #: the HostIp of a port binding that names none (``[daemon] default_ip``, ``--ip``)
    default_ip: str = "0.0.0.0"
    #: the daemon's version, for what a driver sends out (a User-Agent)
    version: str = ""


Opts = TypeVar("Opts", bound=BaseModel)
S = TypeVar("S", bound=FamilySettings)


@dataclass(frozen=True)
class DriverContext(Generic[Opts, S]):
    """Everything a driver is given when it is made; ``DriverFamily.create`` builds it the same
    way for every family.

    ``home`` is the driver's own state directory (``<root>/<family>/<name>``), created before
    the driver's ``__init__`` runs; ``options`` its config section parsed into its ``Options``
    model; ``daemon`` the daemon's settings it may read; ``family`` the family-wide settings,
    parsed into the family's ``Settings`` model.
    """

    home: Path
    options: Opts
    daemon: DaemonSettings
    family: S

    @property
    def root(self) -> Path:
        """The daemon's root directory."""
        return self.daemon.root

    @classmethod
    def standalone(cls, driver: type[Driver], home: Path, options: BaseModel | None = None,
                   root: Path | None = None) -> DriverContext:
        """A context for a driver made outside a daemon (a test, a benchmark): ``options``
        default to the driver's ``Options()``, ``root`` to ``home``, daemon and family settings
        to their defaults."""
        return cls(Path(home), options if options is not None else driver.Options(),
                   DaemonSettings(Path(root if root is not None else home)), driver.Settings())


class Driver:
    """Base of every driver class of every family. A complete minimal driver::

        from pydantic import BaseModel
        from moorage.core.sdk.driver import DriverContext, FamilySettings
        from moorage.core.sdk.hookspecs import hookimpl
        from moorage.core.sdk.hookspecs.graph import GraphDriver

        class MineOptions(BaseModel):      # its config section, [graph.mine]
            size: int = 10

        class MineDriver(GraphDriver):
            name = "mine"
            Options = MineOptions

            def __init__(self, context: DriverContext[MineOptions, FamilySettings]) -> None:
                super().__init__(context)   # self.home, self.options, self.context
                self.size = context.options.size   # typed: a MineOptions
                ...                                 # probe the host: raise NotSupported

            ...                                     # the family's abstract methods

        @hookimpl
        def moorage_graph_register():
            return [MineDriver]

    Every driver has this one constructor: it takes a ``DriverContext`` (see there) and
    nothing else, and calls ``super().__init__(context)`` first.
    """

    #: The name the config and the API use for this driver (``vfs``, ``native``...).
    name: ClassVar[str] = ""
    #: Default auto-selection priority within its family: lower is tried first.
    priority: ClassVar[int] = 100
    #: The pydantic model of this driver's config section.
    Options: ClassVar[type[BaseModel]] = NoOptions
    #: The model of the family-wide settings; set by the family's base class, not by drivers.
    Settings: ClassVar[type[FamilySettings]] = FamilySettings

    def __init__(self, context: DriverContext) -> None:
        self.context = context
        self.home = context.home
        self.options = context.options

    def cleanup(self) -> None:
        """Release what the driver holds, once, at daemon shutdown (containers keep running).
        The default holds nothing; a family's contract may require more."""

    @classmethod
    def probe(cls, context: DriverContext) -> None:
        """Optional: raise ``NotSupported`` if this host cannot run the driver, changing nothing
        (``context.home`` may not exist yet).

        ``moorage drivers`` calls it in the host's own namespaces for a driver that defines it
        (one that needs to see the host, e.g. a NIC); a driver without it is built on a scratch
        root in namespaces of its own instead. A driver defining it calls it from ``__init__``.
        """

    @classmethod
    def has_probe(cls) -> bool:
        """Whether the class defines its own ``probe``."""
        return cls.probe.__func__ is not Driver.probe.__func__


D = TypeVar("D", bound=Driver)
T = TypeVar("T")


def describe(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class NamedClasses(Generic[T]):
    """Classes that plugins registered under their ``name``, each a subclass of ``base``;
    ``kind`` names them in errors ("graph driver", "feature")."""

    def __init__(self, kind: str, base: type[T]) -> None:
        self.kind = kind
        self.base = base
        self._classes: dict[str, type[T]] = {}

    def register(self, classes: Iterable[type[T]], source: str) -> None:
        for cls in classes:
            if not (isinstance(cls, type) and issubclass(cls, self.base)):
                raise PluginError(f"{source} registered {cls!r} as a {self.kind}, "
                                  f"but it is not a subclass of {describe(self.base)}")
            if not cls.name:
                raise PluginError(f"{source}: {self.kind} {describe(cls)} has no name")
            other = self._classes.get(cls.name)
            if other is not None and other is not cls:
                raise PluginError(f"{self.kind} name {cls.name!r} is registered twice: "
                                  f"by {describe(other)} and by {describe(cls)}")
            self._classes[cls.name] = cls

    def names(self) -> list[str]:
        return sorted(self._classes)

    def classes(self) -> list[type[T]]:
        return [self._classes[name] for name in self.names()]

    def get(self, name: str) -> type[T]:
        try:
            return self._classes[name]
        except KeyError:
            registered = ", ".join(self.names()) or "none"
            raise NotFound(f"{self.kind} {name!r} is not available (registered: {registered}); "
                           f"the plugin that provides it may not be installed or may be blocked") from None


class DriverFamily(NamedClasses[D]):
    """The registered driver classes of one family, selected by name."""

    def __init__(self, family: str, base: type[D]) -> None:
        super().__init__(f"{family} driver", base)
        self.family = family

    def by_priority(self) -> list[type[D]]:
        return sorted(self._classes.values(), key=lambda c: (c.priority, c.name))

    def parse_options(self, cls: type[D], section: Mapping[str, Any], where: str) -> BaseModel:
        return _parse(cls.Options, section, where)

    def context(self, cls: type[D], root: Path, section: Mapping[str, Any], settings: DriverSettings,
                where: str) -> DriverContext:
        """The context of driver class ``cls`` on daemon root ``root`` (its home not yet made):
        ``section`` is its config table, ``settings`` what the daemon gives every driver."""
        return DriverContext(root / self.family / cls.name, self.parse_options(cls, section, where),
                             settings.daemon, _parse(cls.Settings, settings.family, where))

    def create(self, name: str, root: Path, section: Mapping[str, Any], settings: DriverSettings,
               where: str) -> D:
        """Instantiate ``name``; NotSupported and other failures propagate to the caller."""
        cls = self.get(name)
        context = self.context(cls, root, section, settings, where)
        context.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cls(context)

    def select(self, wanted: str | None, priority: list[str] | None, root: Path,
               sections: Mapping[str, Mapping[str, Any]], settings: DriverSettings,
               where: str) -> D:
        """The configured driver, or the first of the priority list this host supports.

        A driver named by the config must work: NotSupported then becomes a ConfigError. In
        auto-selection NotSupported moves on to the next candidate; any other error stops.
        """
        if wanted:
            try:
                return self.create(wanted, root, sections.get(wanted, {}), settings, where)
            except NotSupported as exc:
                raise ConfigError(f"{self.family} driver {wanted!r} is not supported on this host: {exc}") from None
        candidates = [self.get(n) for n in priority] if priority else self.by_priority()
        reasons = []
        for cls in candidates:
            try:
                return self.create(cls.name, root, sections.get(cls.name, {}), settings, where)
            except NotSupported as exc:
                log.info("%s driver %s not supported here: %s", self.family, cls.name, exc)
                reasons.append(f"{cls.name}: {exc}")
        raise ConfigError(f"no {self.family} driver works on this host ({'; '.join(reasons) or 'none registered'})")


@dataclass(frozen=True)
class DriverSettings:
    """What the daemon gives every driver of one family, before one is picked: its own
    settings, and the family's ``[<family>]`` keys, which ``DriverFamily`` parses into the
    family's ``Settings`` model."""

    daemon: DaemonSettings
    family: Mapping[str, Any]


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], section: Mapping[str, Any], where: str) -> M:
    try:
        return model.model_validate(dict(section))
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{where}: key {key!r}: {first['msg']}") from None
