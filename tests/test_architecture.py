"""The package's import rules and size limits (docs/architecture.md), checked on the sources of the
installed package with an AST walk: a test fails naming the file, the line and the rule broken.

Who may import whom:

- ``moorage.core.sdk``: only the SDK;
- a driver (``moorage.drivers.<family>.<driver>``): the SDK, its family's shared code
  (``moorage.drivers.<family>.common``) and its own package; never another driver, the
  kernel, the services, the API, the testing kit or a plugin;
- ``moorage.core.services``: the SDK, the services, and ``kernel.config``, ``kernel.lifecycle``,
  ``kernel.pools``;
- ``moorage.core.kernel``: the SDK, the kernel, the services (and ``moorage.core``'s version);
- ``moorage.core.testing``: anything in ``moorage.core`` and ``moorage.drivers``, not the API or
  the plugins;
- ``moorage.api.http`` and ``moorage.api.cli``: ``moorage.core`` but not its testing kit, and
  the API;
- a plugin (``moorage.plugins.<name>``): the SDK, the services, ``kernel.pools``,
  ``kernel.features``, ``kernel.lifecycle``, ``moorage.api.http`` and its own package.

No module outside ``moorage.core.testing`` imports pytest or hypothesis. No module is over 600
lines and no class over 300.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: The top-level packages of the distribution (``package-dir`` in pyproject.toml).
ROOTS = ("moorage.core", "moorage.api", "moorage.drivers", "moorage.plugins")

MAX_MODULE_LINES = 600
MAX_CLASS_LINES = 300


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def installed_modules() -> dict[str, Module]:
    """Every Python module of the installed package, by dotted name."""
    modules = {}
    for root in ROOTS:
        package = importlib.import_module(root)
        base = Path(package.__file__).parent
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join((root, *(parts[:-1] if is_package else parts)))
            modules[name] = Module(name, path, is_package)
    return modules


MODULES = installed_modules()


def imports(module: Module) -> Iterator[tuple[int, str]]:
    """(line, imported module) for every import statement, also inside functions and
    ``TYPE_CHECKING`` blocks; ``from a import b`` names ``a.b`` when that is a module."""
    tree = ast.parse(module.path.read_text(), str(module.path))
    package = module.name if module.is_package else module.name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if candidate in MODULES else base


def within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


SDK = "moorage.core.sdk"
KERNEL = "moorage.core.kernel"
SERVICES = "moorage.core.services"
TESTING = "moorage.core.testing"


def allowed(importer: str, imported: str) -> str | None:
    """None if ``importer`` may import ``imported``, else the rule it breaks."""
    if not within(imported, "moorage"):
        return None
    if within(importer, SDK):
        return None if within(imported, SDK) else "the SDK imports only the SDK"
    if within(importer, "moorage.drivers"):
        parts = importer.split(".")
        if len(parts) < 4:  # moorage.drivers and moorage.drivers.<family>: packages only
            return "a driver family's package imports nothing of moorage"
        family = ".".join(parts[:3])
        if within(imported, SDK, f"{family}.common", ".".join(parts[:4])):
            return None
        return (f"a driver imports only the SDK, {family}.common and its own package "
                f"({'.'.join(parts[:4])})")
    if within(importer, SERVICES):
        if within(imported, SDK, SERVICES, f"{KERNEL}.config", f"{KERNEL}.lifecycle", f"{KERNEL}.pools"):
            return None
        return "the services import only the SDK, the services and kernel.config, kernel.lifecycle, kernel.pools"
    if within(importer, KERNEL):
        if within(imported, SDK, KERNEL, SERVICES) or imported == "moorage.core":
            return None
        return "the kernel imports only the SDK, the kernel and the services"
    if within(importer, TESTING):
        if within(imported, "moorage.core", "moorage.drivers"):
            return None
        return "the testing kit imports moorage.core and moorage.drivers, never the API or a plugin"
    if within(importer, "moorage.api"):
        if within(imported, TESTING):
            return "the API does not import the testing kit"
        if within(imported, "moorage.core", "moorage.api"):
            return None
        return "the API imports only moorage.core (not its testing kit) and the API"
    if within(importer, "moorage.plugins"):
        own = ".".join(importer.split(".")[:3])
        if within(imported, SDK, SERVICES, f"{KERNEL}.pools", f"{KERNEL}.features", f"{KERNEL}.lifecycle",
                  "moorage.api.http", own):
            return None
        return ("a plugin imports only the SDK, the services, kernel.pools, kernel.features, kernel.lifecycle, "
                "moorage.api.http and its own package")
    if importer == "moorage.core":
        return "moorage.core's own module imports nothing of moorage"
    return None


def where(module: Module, line: int) -> str:
    return f"{module.path}:{line}"


def test_the_package_is_found():
    assert {"moorage.core.sdk.driver", "moorage.core.kernel.kernel", "moorage.drivers.graph.vfs"} <= set(MODULES)


def test_imports_follow_the_architecture():
    broken = []
    for module in MODULES.values():
        for line, imported in imports(module):
            rule = allowed(module.name, imported)
            if rule is not None:
                broken.append(f"{where(module, line)}: {module.name} imports {imported}: {rule}")
    assert not broken, "\n".join(broken)


def test_only_the_testing_kit_imports_pytest_or_hypothesis():
    broken = []
    for module in MODULES.values():
        if within(module.name, TESTING):
            continue
        for line, imported in imports(module):
            if within(imported, "pytest", "_pytest", "hypothesis"):
                broken.append(f"{where(module, line)}: {module.name} imports {imported}: only "
                              f"{TESTING} may import pytest or hypothesis")
    assert not broken, "\n".join(broken)


def test_no_module_or_class_is_too_long():
    broken = []
    for module in MODULES.values():
        text = module.path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            broken.append(f"{module.path}:1: {module.name} has {lines} lines: no module over {MAX_MODULE_LINES}")
        for node in ast.walk(ast.parse(text, str(module.path))):
            if isinstance(node, ast.ClassDef):
                length = node.end_lineno - node.lineno + 1
                qualified = f"{module.name}.{node.name}"
                if length > MAX_CLASS_LINES:
                    broken.append(f"{where(module, node.lineno)}: class {qualified} has {length} lines: "
                                  f"no class over {MAX_CLASS_LINES}")
    assert not broken, "\n".join(broken)


def test_a_crossing_is_reported_with_its_rule():
    """The checker itself: a driver importing another driver, the services importing the
    kernel's wiring, the SDK importing the kernel."""
    assert allowed("moorage.drivers.exec.lxc.cgroup_ops", "moorage.drivers.exec.native.cgroups")
    assert allowed("moorage.drivers.exec.lxc.cgroup_ops", "moorage.drivers.exec.common.cgroupfs") is None
    assert allowed("moorage.drivers.registry.v2.images", "moorage.core.services.container_config")
    assert allowed("moorage.core.services.runner", "moorage.core.kernel.wiring")
    assert allowed("moorage.core.sdk.driver", "moorage.core.kernel.config")
    assert allowed("moorage.plugins.builder.plugin", "moorage.core.kernel.features") is None
