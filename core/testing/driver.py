"""The driver a contract suite runs against, built exactly as the daemon builds it.

``DriverUnderTest`` names a driver (family and name) and the daemon config its options come
from; ``DriverFactory`` instantiates it through ``DriverFamily.create``: the driver's config
section is parsed by its ``Options`` model, its home is ``<root>/<family>/<name>`` and its
``DriverContext`` is the one the kernel gives it. The pytest plugin (``moorage.core.testing.plugin``)
turns these into the ``moorage_driver``, ``driver_root`` and ``driver_factory`` fixtures.
"""

from __future__ import annotations

import functools
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moorage.core.kernel.config import DEFAULT_CONFIG_TOML, FAMILIES, DaemonConfig, deep_merge, load, parse_toml
from moorage.core.kernel.plugins import build_driver, installed_plugins
from moorage.core.sdk.driver import Driver, DriverFamily
from moorage.core.sdk.errors import NotSupported

__all__ = ["DriverUnderTest", "DriverFactory", "installed_families"]


@functools.lru_cache(maxsize=8)
def installed_families(blocked: tuple[str, ...] = (), enable: tuple[str, ...] = ()) -> dict[str, DriverFamily]:
    """Every family's registered drivers, loaded from the entry points as the daemon loads them."""
    return installed_plugins(blocked, enable).families


@dataclass(frozen=True)
class DriverUnderTest:
    """Driver ``name`` of ``family``, with the options the daemon config ``config`` gives it.

    ``root_base`` is the ``[daemon] root`` the config file names, if it names one: each test
    then gets a fresh directory below it (to test a driver on a particular filesystem).
    """

    family: str
    name: str
    config: DaemonConfig = field(default_factory=lambda: load(None))
    root_base: Path | None = None
    #: the registered drivers to build it from (default: those the installed plugins register);
    #: a test may register a variant of a driver in a family of its own
    drivers: DriverFamily | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown driver family {self.family!r} (families: {', '.join(FAMILIES)})")

    @classmethod
    def from_toml(cls, family: str, name: str, text: str = "", source: str = "driver options") -> DriverUnderTest:
        """The driver with the options of config text ``text`` (the daemon's file format)."""
        data = parse_toml(text, source)
        config = DaemonConfig(deep_merge(parse_toml(DEFAULT_CONFIG_TOML, "embedded defaults"), data), source, text)
        root = (data.get("daemon") or {}).get("root")
        return cls(family, name, config, Path(root) if root else None)

    @classmethod
    def from_file(cls, family: str, name: str, path: Path) -> DriverUnderTest:
        """The driver with the options of config file ``path``, refused as the daemon refuses it."""
        config = load(path, required=True)
        root = (tomllib.loads(Path(path).read_text()).get("daemon") or {}).get("root")
        return cls(family, name, config, Path(root) if root else None)

    @property
    def section(self) -> dict[str, Any]:
        """The driver's own config table (``[<family>.<name>]``)."""
        return self.config.family(self.family).driver_sections().get(self.name, {})

    def registered(self) -> DriverFamily:
        plugins = self.config.plugins
        family = self.drivers or installed_families(tuple(plugins.blocked), tuple(plugins.enable))[self.family]
        family.get(self.name)  # NotFound naming the registered drivers
        return family

    def create(self, root: Path, **settings: Any) -> Driver:
        """A new instance on ``root``; ``settings`` override family-wide config keys."""
        return build_driver(self.registered(), self.config, self.name, Path(root), **settings)

    def __str__(self) -> str:
        return f"{self.family}={self.name}"


class DriverFactory:
    """``factory(root=None, **settings)`` -> a new instance of the driver under test.

    Without ``root`` it is built on the test's root: a second call then stands for a restarted
    daemon finding the first one's state. ``NotSupported`` skips the test with the driver's
    reason. Every instance is shut down (``cleanup``) when the test ends, once.
    """

    def __init__(self, under_test: DriverUnderTest, root: Path) -> None:
        self.under_test = under_test
        self.root = root
        self.made: list[Driver] = []
        self._shut: set[int] = set()

    @property
    def home(self) -> Path:
        """The driver's home on the test's root."""
        return self.root / self.under_test.family / self.under_test.name

    def __call__(self, root: Path | None = None, **settings: Any) -> Driver:
        import pytest

        try:
            driver = self.under_test.create(root or self.root, **settings)
        except NotSupported as exc:
            pytest.skip(f"{self.under_test.family} driver {self.under_test.name} is not supported here: {exc}")
        self.made.append(driver)
        return driver

    def shutdown(self, driver: Driver) -> None:
        """``driver.cleanup()``, as a daemon stopping; the finalizer then leaves it alone."""
        if id(driver) not in self._shut:
            self._shut.add(id(driver))
            driver.cleanup()

    def finish(self) -> None:
        errors = []
        for driver in self.made:
            try:
                self.shutdown(driver)
            except Exception as exc:  # shut the others down too, then report
                errors.append(f"{type(exc).__name__}: {exc}")
        if errors:
            raise AssertionError(f"cleanup of {self.under_test} failed: {'; '.join(errors)}")

