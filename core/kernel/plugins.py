"""The plugin manager: loads plugins from the ``moorage`` entry-point group and collects the
driver classes they register, one ``DriverFamily`` per hook family, and the feature classes.

Built-in drivers are entry points of the ``moorage`` distribution itself, so they load exactly
as a third-party package's do. ``MOORAGE_DISABLE_PLUGIN_AUTOLOAD`` (any non-empty value) loads
only the entry points of the ``moorage`` distribution plus those the config names in
``[plugins] enable``; ``[plugins] blocked`` names entry points never to load.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pluggy

from moorage.core.kernel.config import DaemonConfig
from moorage.core.kernel.features import Feature
from moorage.core.sdk.driver import Driver, DriverContext, DriverFamily, DriverSettings, NamedClasses, describe
from moorage.core.sdk.errors import PluginError
from moorage.core.sdk.hookspecs import DRIVER_FAMILIES, FAMILY_MODULES, PROJECT
from moorage.core.sdk.hookspecs.exec import ExecDriver
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.core.sdk.hookspecs.network import NetworkDriver
from moorage.core.sdk.hookspecs.registry import RegistryClient
from moorage.core.sdk.hookspecs.volume import VolumeDriver

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "moorage"
AUTOLOAD_ENV = "MOORAGE_DISABLE_PLUGIN_AUTOLOAD"
OWN_DISTRIBUTION = "moorage"

#: family name -> (base class, register hook name), in ``DRIVER_FAMILIES`` order
FAMILIES: dict[str, tuple[type, str]] = {
    family: (base, f"moorage_{family}_register")
    for family, base in zip(DRIVER_FAMILIES, (GraphDriver, ExecDriver, NetworkDriver, RegistryClient, VolumeDriver),
                            strict=True)
}


@dataclass(frozen=True)
class LoadedPlugin:
    name: str
    distribution: str
    version: str
    value: str


class PluginManager:
    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        for module in FAMILY_MODULES:
            self.pm.add_hookspecs(importlib.import_module(module))
        self.loaded: list[LoadedPlugin] = []
        self.families: dict[str, DriverFamily] = {f: DriverFamily(f, base) for f, (base, _) in FAMILIES.items()}
        #: feature name -> class, filled by ``collect_features``
        self.features: NamedClasses[Feature] = NamedClasses("feature", Feature)

    @property
    def hook(self):
        return self.pm.hook

    def load_entry_points(self, blocked: Iterable[str] = (), enable: Iterable[str] = (),
                          autoload: bool | None = None) -> None:
        """Load the ``moorage`` entry points (see module docstring for what is skipped)."""
        if autoload is None:
            autoload = not os.environ.get(AUTOLOAD_ENV)
        blocked, enable = set(blocked), set(enable)
        for name in blocked:
            self.pm.set_blocked(name)
        for dist in importlib.metadata.distributions():
            dist_name = dist.metadata["Name"] or "?"
            for ep in dist.entry_points:
                if ep.group != ENTRY_POINT_GROUP or ep.name in blocked:
                    continue
                own = _canonical(dist_name) == OWN_DISTRIBUTION
                if not (autoload or own or ep.name in enable):
                    continue
                if self.pm.get_plugin(ep.name) is not None:
                    continue  # the same distribution seen twice on sys.path
                self._load(ep, dist_name, dist.version)

    def _load(self, ep: importlib.metadata.EntryPoint, dist_name: str, version: str) -> None:
        where = f"entry point {ep.name!r} ({ep.value}) of distribution {dist_name} {version}"
        try:
            plugin = ep.load()
            self.pm.register(plugin, name=ep.name)
        except Exception as exc:
            raise PluginError(f"could not load plugin {where}: {type(exc).__name__}: {exc}") from exc
        self.loaded.append(LoadedPlugin(ep.name, dist_name, version, ep.value))

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register an already-imported plugin object (used by tests and embedding code)."""
        self.pm.register(plugin, name=name)

    def check_pending(self) -> None:
        """Refuse a ``moorage_*`` hookimpl that no hookspec declares: a misspelled hook would
        otherwise never be called, and nobody would know."""
        for name, caller in vars(self.pm.hook).items():
            if name.startswith("_") or caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.optionalhook:
                    continue
                raise PluginError(f"plugin {self._describe(impl.plugin_name)} implements {name}, which is not a "
                                  f"moorage hook (misspelled?); the hooks are listed in docs/hooks.md")

    def _describe(self, plugin_name: str) -> str:
        for loaded in self.loaded:
            if loaded.name == plugin_name:
                return f"{plugin_name!r} ({loaded.value} of distribution {loaded.distribution} {loaded.version})"
        return repr(plugin_name)

    def _registered(self, caller: pluggy.HookCaller) -> Iterator[tuple[str, list[type]]]:
        """Call each hookimpl of a register hook: (who, the classes it returned)."""
        for impl in caller.get_hookimpls():
            source = f"plugin {self._describe(impl.plugin_name)}"
            try:
                classes = impl.function()
            except Exception as exc:
                raise PluginError(f"{source} failed in {caller.name}: {type(exc).__name__}: {exc}") from exc
            if classes is None:
                continue
            if isinstance(classes, type):
                raise PluginError(f"{source}: {caller.name} must return a list of classes, got {describe(classes)}")
            yield source, list(classes)

    def collect_features(self) -> list[type[Feature]]:
        """Call ``moorage_feature_register`` of every plugin; the feature classes, by name."""
        for source, classes in self._registered(self.pm.hook.moorage_feature_register):
            self.features.register(classes, source)
        return self.features.classes()

    def collect_drivers(self) -> None:
        """Call every family's register hook and fill the driver families."""
        for family, (_, hook_name) in FAMILIES.items():
            for source, classes in self._registered(getattr(self.pm.hook, hook_name)):
                self.families[family].register(classes, source)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


# -- drivers by name, as the daemon builds them (`moorage drivers`, `moorage bench`, the suites) --
def installed_plugins(blocked: Iterable[str] = (), enable: Iterable[str] = ()) -> PluginManager:
    """The plugins a daemon with ``[plugins] blocked`` and ``enable`` loads, drivers collected."""
    pm = PluginManager()
    pm.load_entry_points(blocked, enable)
    pm.collect_drivers()
    return pm


def _driver_inputs(registered: DriverFamily, config: DaemonConfig, name: str, root: Path,
                   family_settings: dict[str, Any]) -> tuple[dict[str, Any], DriverSettings, str]:
    """Driver ``name``'s ``[family.name]`` table, the settings the config gives its family
    (``family_settings`` override family-wide keys), and where the table is, for errors."""
    family = registered.family
    given = config.driver_settings(family, Path(root))
    settings = DriverSettings(given.daemon, {**given.family, **family_settings})
    return (config.family(family).driver_sections().get(name, {}), settings,
            config.driver_section_error(family, name))


def driver_context(registered: DriverFamily, config: DaemonConfig, name: str, root: Path,
                   **family_settings: Any) -> DriverContext:
    """The context driver ``name`` gets on daemon root ``root`` (its table parsed by its
    ``Options``: a ``ConfigError`` names the table), without building it (``probe``)."""
    section, settings, where = _driver_inputs(registered, config, name, root, family_settings)
    return registered.context(registered.get(name), Path(root), section, settings, where)


def build_driver(registered: DriverFamily, config: DaemonConfig, name: str, root: Path,
                 **family_settings: Any) -> Driver:
    """Driver ``name`` on daemon root ``root``, built as the daemon builds it; ``NotSupported``
    says why it cannot run here."""
    section, settings, where = _driver_inputs(registered, config, name, root, family_settings)
    return registered.create(name, Path(root), section, settings, where)
