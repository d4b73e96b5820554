"""``moorage drivers`` (what is installed, what works here, what each takes) and
``moorage config check FILE`` (a config file's mistakes, all of them, before a daemon meets them).

Whether a driver works on this host is what it says itself: its ``probe`` classmethod if it has
one (called here, in the host's namespaces: it changes nothing), otherwise its constructor
(drivers probe their prerequisites in ``__init__``). Constructors may make host state (a bridge,
a mount), so those run in a child process in new network and mount namespaces, on a scratch root
beside the configured one (same filesystem), which it removes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from moorage.core.kernel.config import DEFAULT_CONFIG_PATH, FAMILIES, DaemonConfig, load
from moorage.core.kernel.plugins import FAMILIES as HOOKS
from moorage.core.kernel.plugins import PluginManager, build_driver, driver_context, installed_plugins
from moorage.core.sdk.driver import describe
from moorage.core.sdk.errors import ConfigError, MoorageError, NotSupported

#: family-wide settings (plain keys of ``[family]``) the family contracts define
FAMILY_SETTINGS: dict[str, set[str]] = {"graph": set(), "exec": set(), "network": set(), "registry": {"default"},
                                     "volume": set()}
FAMILY_KEYS = {"driver", "priority"}


@dataclass
class OptionInfo:
    name: str
    type: str
    default: Any  # None with ``required``
    required: bool
    description: str = ""


@dataclass
class DriverInfo:
    family: str
    name: str
    cls: str
    distribution: str
    version: str
    entry_point: str
    priority: int
    options: list[OptionInfo]
    supported: bool | None = None  # None: not probed
    reason: str = ""
    selected: bool = False


@dataclass
class Inventory:
    config: str
    probed_on: str
    families: dict[str, list[DriverInfo]] = field(default_factory=dict)
    selection: dict[str, str] = field(default_factory=dict)  # family -> how the driver is chosen

    def as_json(self) -> dict:
        return {"config": self.config, "probed_on": self.probed_on,
                "families": {f: {"selection": self.selection.get(f, ""), "drivers": [_driver_json(d) for d in ds]}
                             for f, ds in self.families.items()}}


def _driver_json(info: DriverInfo) -> dict:
    data = asdict(info)
    data["options"] = [asdict(o) for o in info.options]
    return data


def type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return re.sub(r"\b[a-z_][a-z0-9_]*\.", "", str(annotation))  # ipaddress.IPv4Network -> IPv4Network


def option_infos(model: type[BaseModel]) -> list[OptionInfo]:
    """The fields of a driver's ``Options`` model: name, type, default."""
    infos = []
    for name, info in model.model_fields.items():
        required = info.is_required()
        try:
            default = None if required else info.get_default(call_default_factory=True)
        except TypeError:  # a factory that needs the other fields: no single default to show
            default = None
        if not isinstance(default, str | int | float | bool | list | dict | type(None)):
            default = str(default)  # an address, a path: as the config file would spell it
        infos.append(OptionInfo(name, type_name(info.annotation), default, required, info.description or ""))
    return infos


def plugin_manager(config: DaemonConfig) -> PluginManager:
    """The plugins the daemon with ``config`` loads."""
    return installed_plugins(config.plugins.blocked, config.plugins.enable)


def origins(pm: PluginManager) -> dict[tuple[str, str], tuple[str, str, str]]:
    """(family, driver name) -> (distribution, version, entry point) of the plugin registering it."""
    loaded = {p.name: p for p in pm.loaded}
    found = {}
    for family, (_, hook_name) in HOOKS.items():
        for impl in getattr(pm.hook, hook_name).get_hookimpls():
            plugin = loaded.get(impl.plugin_name)
            for cls in impl.function() or []:
                if plugin is not None:
                    found[(family, cls.name)] = (plugin.distribution, plugin.version, f"{plugin.name} = {plugin.value}")
                else:
                    found[(family, cls.name)] = ("?", "", impl.plugin_name)
    return found


def collect(config: DaemonConfig, probe: bool = True) -> Inventory:
    pm = plugin_manager(config)
    where = origins(pm)
    inventory = Inventory(config.source, str(config.daemon.root) if probe else "")
    results = {}
    if probe:
        results = probe_in_namespaces(config)
        for family, found in probe_all(config, own_probe=True).items():
            results.setdefault(family, {}).update(found)
    for family in FAMILIES:
        drivers = []
        for cls in pm.families[family].by_priority():
            dist, version, ep = where.get((family, cls.name), ("?", "", "?"))
            info = DriverInfo(family, cls.name, describe(cls), dist, version, ep, cls.priority,
                              option_infos(cls.Options))
            if probe:
                reason = results.get(family, {}).get(cls.name, "not probed")
                info.supported, info.reason = reason is None, reason or ""
            drivers.append(info)
        section = config.family(family)
        if section.driver:
            inventory.selection[family] = f"driver = {section.driver!r} in the config"
            chosen = section.driver
        else:
            order = section.priority or [d.name for d in drivers]
            inventory.selection[family] = "auto: the first supported of " + ", ".join(order)
            chosen = next((n for n in order if any(d.name == n and d.supported for d in drivers)), None)
        for info in drivers:
            info.selected = info.name == chosen
        inventory.families[family] = drivers
    return inventory


def _scratch_parent(root: Path) -> Path | None:
    """An existing directory on the daemon root's filesystem (the root, or its nearest parent),
    or None (the system's temporary directory) where this user may not write there: an
    ordinary user asking what would work here."""
    path = Path(root)
    while not path.is_dir():
        path = path.parent
    return path if os.access(path, os.W_OK | os.X_OK) else None


def probe_all(config: DaemonConfig, own_probe: bool) -> dict[str, dict[str, str | None]]:
    """family -> name -> None (works here) or why not, for the drivers with their own ``probe``
    (``own_probe``: asked) or for the others (built on a scratch root)."""
    pm = plugin_manager(config)
    scratch = Path(tempfile.mkdtemp(prefix=".moorage-probe-", dir=_scratch_parent(config.daemon.root)))
    results: dict[str, dict[str, str | None]] = {}
    try:
        for family in FAMILIES:
            results[family] = {}
            for name in pm.families[family].names():
                if pm.families[family].get(name).has_probe() != own_probe:
                    continue
                reason = _probe_one(pm, config, family, name, scratch)
                # say it of the root the daemon would use, not of the scratch copy
                results[family][name] = reason.replace(str(scratch), str(config.daemon.root)) if reason else None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def _probe_one(pm: PluginManager, config: DaemonConfig, family: str, name: str, scratch: Path):
    registered = pm.families[family]
    try:
        cls = registered.get(name)
        if cls.has_probe():
            cls.probe(driver_context(registered, config, name, scratch))
            return None
        driver = build_driver(registered, config, name, scratch)
    except NotSupported as exc:
        return str(exc)
    except ConfigError as exc:
        return f"its config section is invalid: {exc.message}"
    except Exception as exc:  # a broken driver: say so, keep listing the others
        return f"broken: {type(exc).__name__}: {exc}"
    try:
        driver.cleanup()
    except Exception:
        pass  # the scratch root and the namespaces go away anyway
    return None


def probe_in_namespaces(config: DaemonConfig) -> dict[str, dict[str, str | None]]:
    """``probe_all`` in a child with its own network and mount namespaces (as root; otherwise
    a plain child: without privileges a driver cannot change the host)."""
    argv = [sys.executable, "-m", "moorage.api.cli.inventory", "--probe"]
    if config.source != "embedded defaults":
        argv.append(config.source)
    if os.geteuid() == 0 and shutil.which("unshare"):
        argv = ["unshare", "--net", "--mount", "--propagation", "private", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise MoorageError(f"probing the drivers failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


# -- moorage drivers ---------------------------------------------------------------------------
def run_drivers(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    inventory = collect(config, probe=not args.no_probe)
    if args.json:
        print(json.dumps(inventory.as_json(), indent=2, default=str))
        return 0
    print_inventory(inventory)
    return 0


def load_config(path: Path | None) -> DaemonConfig:
    return load(path if path is not None else DEFAULT_CONFIG_PATH, required=path is not None)


def print_inventory(inventory: Inventory) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    probed = f"; probed for root {inventory.probed_on}" if inventory.probed_on else ""
    console.print(f"config: {inventory.config}{probed}")
    for family, drivers in inventory.families.items():
        table = Table(title=f"{family} ({inventory.selection.get(family, '')})", title_justify="left",
                      show_lines=False)
        for column in ("", "driver", "from", "on this host", "options (type = default)"):
            table.add_column(column, overflow="fold")
        for d in drivers:
            if d.supported is None:
                support = "not probed"
            else:
                support = "supported" if d.supported else f"no: {d.reason}"
            options = "\n".join(f"{o.name}: {o.type} = {'(required)' if o.required else json.dumps(o.default)}"
                                for o in d.options) or "-"
            table.add_row("*" if d.selected else "", d.name, f"{d.distribution} {d.version}".strip(), support, options)
        console.print(table)
    console.print("* the driver the config selects")


# -- moorage config check ----------------------------------------------------------------------
def check_config(path: Path) -> list[str]:
    """Every problem of config file ``path``: the daemon's own validation first (syntax, sections,
    [daemon] and [plugins] keys), then driver names, family keys and each driver's options."""
    config = load(path, required=True)
    pm = plugin_manager(config)
    problems = []
    for family in FAMILIES:
        section = config.family(family)
        registered = pm.families[family]
        names = registered.names()
        listed = ", ".join(names) or "none"
        for key in section.settings():
            if key not in FAMILY_SETTINGS[family]:
                known = ", ".join(sorted(FAMILY_KEYS | FAMILY_SETTINGS[family]))
                problems.append(f"{config.where(family, key)}: unknown key {family}.{key} (keys of [{family}]: "
                                f"{known}, and [{family}.DRIVER] tables)")
        wanted = [("driver", section.driver)] if section.driver else []
        wanted += [("priority", n) for n in section.priority or []]
        for key, name in wanted:
            if name not in names:
                problems.append(f"{config.where(family, key)}: {family}.{key}: unknown {family} driver {name!r} "
                                f"(installed: {listed})")
        for name, options in section.driver_sections().items():
            where = config.driver_section_error(family, name)
            if name not in names:
                problems.append(f"{where}: [{family}.{name}]: unknown {family} driver {name!r} (installed: {listed})")
                continue
            cls = registered.get(name)
            unknown = sorted(set(options) - set(cls.Options.model_fields))
            for key in unknown:
                known = ", ".join(cls.Options.model_fields) or "none"
                problems.append(f"{where}: unknown key {family}.{name}.{key} (options of {name}: {known})")
            if not unknown:
                try:
                    registered.parse_options(cls, options, where)
                except ConfigError as exc:
                    problems.append(exc.message)
    return problems


def run_config_check(args: argparse.Namespace) -> int:
    try:
        problems = check_config(args.file)
    except ConfigError as exc:
        problems = [exc.message]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.file}: ok")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("drivers", help="list the installed drivers and whether they work here",
                       description="Every installed driver per family: where it comes from, whether it works on "
                                   "this host (or why not), its options, and which one the config selects.")
    p.add_argument("--config", type=Path, help=f"daemon config file (default {DEFAULT_CONFIG_PATH}, used if present)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-probe", action="store_true", help="do not build the drivers to see whether they work")
    config = sub.add_parser("config", help="check a config file").add_subparsers(dest="config_command", required=True)
    check = config.add_parser("check", help="validate a daemon config file: syntax, keys, drivers and their options")
    check.add_argument("file", type=Path)


#: subcommand -> what runs it, for api/cli/main.py
COMMANDS = {"drivers": run_drivers, "config": run_config_check}


def main(argv: list[str]) -> int:
    """``python -m moorage.api.cli.inventory --probe [CONFIG]``: the probe child (JSON on stdout)."""
    if argv[:1] != ["--probe"]:
        print("usage: python -m moorage.api.cli.inventory --probe [CONFIG]", file=sys.stderr)
        return 2
    config = load(Path(argv[1]), required=True) if len(argv) > 1 else load(None)
    results = probe_all(config, own_probe=False)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
