"""Plugin loading through real entry points: third-party distributions are made in a temp dir
(a package plus its ``.dist-info`` with ``entry_points.txt``) and put on the daemon's path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_distribution, network_module

from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.driver import DaemonSettings, DriverFamily, DriverSettings
from moorage.core.sdk.errors import ConfigError, NotFound, NotSupported, PluginError
from moorage.core.sdk.hookspecs.network import NetworkDriver

CONFIGURED_HOOK = '''
import json, os
from moorage.core.sdk.hookspecs import hookimpl


@hookimpl
def moorage_daemon_configured(config):
    path = os.path.join(str(config["daemon"]["root"]), "configured-by-plugin.json")
    with open(path, "w") as f:
        json.dump({"root": str(config["daemon"]["root"])}, f)
'''


@pytest.fixture
def site(tmp_path):
    path = tmp_path / "site"
    path.mkdir()
    return path


def env_for(site: Path, **extra) -> dict[str, str]:
    return {"PYTHONPATH": str(site), **extra}


def test_third_party_driver_loads_and_is_selected(daemon_factory, site):
    make_distribution(site, "moorage-tpnet", {"tpnet": network_module("TpNet", "tpnet"),
                                              "tphook": CONFIGURED_HOOK},
                      {"tpnet": "tpnet", "tphook": "tphook"})
    d = daemon_factory('[network]\ndriver = "tpnet"\n', env=env_for(site))
    info = d.client().get("/info").json()
    assert info["Drivers"]["network"] == "tpnet"
    # the lifecycle hook ran with the effective config
    marker = json.loads((d.root / "configured-by-plugin.json").read_text())
    assert marker == {"root": str(d.root)}


def test_hook_moorage_daemon_configured(daemon_factory, site):
    make_distribution(site, "moorage-tphook", {"tphook": CONFIGURED_HOOK}, {"tphook": "tphook"})
    d = daemon_factory(env=env_for(site))
    assert (d.root / "configured-by-plugin.json").exists()


def test_hook_moorage_network_register(daemon_factory, site):
    make_distribution(site, "moorage-tpnet", {"tpnet": network_module("TpNet", "tpnet")}, {"tpnet": "tpnet"})
    d = daemon_factory('[network]\ndriver = "tpnet"\n', env=env_for(site))
    assert d.client().get("/info").json()["Drivers"]["network"] == "tpnet"


def test_blocked_plugin_is_not_loaded_and_unknown_name_lists_registered(daemon_factory, site):
    make_distribution(site, "moorage-tpnet", {"tpnet": network_module("TpNet", "tpnet")}, {"tpnet": "tpnet"})
    d = daemon_factory('[plugins]\nblocked = ["tpnet"]\n[network]\ndriver = "tpnet"\n', env=env_for(site),
                       start=False)
    d.start(wait=False)
    assert d.proc.wait(30) != 0
    log = d.log()
    assert "network driver 'tpnet' is not available (registered:" in log
    assert "may not be installed" in log


def test_autoload_disabled_loads_only_builtins_and_enabled(daemon_factory, site):
    make_distribution(site, "moorage-tpnet", {"tpnet": network_module("TpNet", "tpnet")}, {"tpnet": "tpnet"})
    env = env_for(site, MOORAGE_DISABLE_PLUGIN_AUTOLOAD="1")
    d = daemon_factory('[network]\ndriver = "tpnet"\n', env=env, start=False)
    d.start(wait=False)
    assert d.proc.wait(30) != 0
    assert "network driver 'tpnet' is not available" in d.log()
    d2 = daemon_factory('[plugins]\nenable = ["tpnet"]\n[network]\ndriver = "tpnet"\n', env=env)
    assert d2.client().get("/info").json()["Drivers"]["network"] == "tpnet"


def test_broken_plugin_names_distribution_and_entry_point(daemon_factory, site):
    make_distribution(site, "moorage-broken", {"brokenplugin": "raise ImportError('needs libfoo')\n"},
                      {"broken": "brokenplugin"})
    d = daemon_factory(env=env_for(site), start=False)
    d.start(wait=False)
    assert d.proc.wait(30) != 0
    log = d.log()
    assert "entry point 'broken' (brokenplugin) of distribution moorage-broken 0.1" in log
    assert "needs libfoo" in log


def test_duplicate_driver_names_are_refused_naming_both(daemon_factory, site):
    make_distribution(site, "moorage-a", {"tpa": network_module("FirstNet", "same")}, {"tpa": "tpa"})
    make_distribution(site, "moorage-b", {"tpb": network_module("SecondNet", "same")}, {"tpb": "tpb"})
    d = daemon_factory(env=env_for(site), start=False)
    d.start(wait=False)
    assert d.proc.wait(30) != 0
    log = d.log()
    assert "network driver name 'same' is registered twice" in log
    assert "tpa.FirstNet" in log and "tpb.SecondNet" in log


def test_not_supported_moves_on_but_other_errors_are_fatal(daemon_factory, site):
    make_distribution(site, "moorage-prio", {
        "tpunsup": network_module("Unsupported", "unsup", 1, "raise NotSupported('no such kernel feature')"),
        "tpok": network_module("Works", "works", 2),
        "tpboom": network_module("Boom", "boom", 3, "raise RuntimeError('kaboom')"),
    }, {"tpunsup": "tpunsup", "tpok": "tpok", "tpboom": "tpboom"})
    d = daemon_factory('[network]\npriority = ["unsup", "works"]\n', env=env_for(site))
    assert d.client().get("/info").json()["Drivers"]["network"] == "works"
    # named explicitly, an unsupported driver stops the daemon with the reason
    d2 = daemon_factory('[network]\ndriver = "unsup"\n', env=env_for(site), start=False)
    d2.start(wait=False)
    assert d2.proc.wait(30) != 0
    assert "network driver 'unsup' is not supported on this host: no such kernel feature" in d2.log()
    # any other error is a failure even in auto-selection
    d3 = daemon_factory('[network]\npriority = ["boom", "works"]\n', env=env_for(site), start=False)
    d3.start(wait=False)
    assert d3.proc.wait(30) != 0
    assert "kaboom" in d3.log()


# -- the same rules, unit-level -----------------------------------------------------------------
class _Base(NetworkDriver):
    def join(self, container_id, pid, ports, hostname=""): ...
    def leave(self, container_id): ...
    def release(self, container_id): ...
    def restore(self, container_id, endpoint): ...
    def status(self): return []
    def cleanup(self): ...


class _Good(_Base):
    name = "good"


class _Unsupported(_Base):
    name = "unsupported"
    priority = 1

    def __init__(self, *a, **k):
        raise NotSupported("missing thing")


def test_driver_family_select_and_errors(tmp_path):
    family = DriverFamily("network", NetworkDriver)
    family.register([_Good, _Unsupported], "test")
    assert family.names() == ["good", "unsupported"]
    chosen = family.select(None, None, tmp_path, {}, DriverSettings(DaemonSettings(tmp_path), {}), "cfg")
    assert isinstance(chosen, _Good) and chosen.home == tmp_path / "network" / "good"
    with pytest.raises(NotFound, match=r"registered: good, unsupported"):
        family.get("nope")
    with pytest.raises(ConfigError, match="not supported on this host: missing thing"):
        family.select("unsupported", None, tmp_path, {}, DriverSettings(DaemonSettings(tmp_path), {}), "cfg")
    with pytest.raises(PluginError, match="not a subclass"):
        family.register([object], "test")
    with pytest.raises(ConfigError, match="key 'x': Extra inputs are not permitted"):
        family.select("good", None, tmp_path, {"good": {"x": 1}}, DriverSettings(DaemonSettings(tmp_path), {}), "cfg")


def test_plugin_manager_rejects_a_register_hook_returning_a_class():
    from moorage.core.sdk.hookspecs import hookimpl

    class Plugin:
        @hookimpl
        def moorage_network_register(self):
            return _Good

    pm = PluginManager()
    pm.register(Plugin(), "bad")
    with pytest.raises(PluginError, match="must return a list"):
        pm.collect_drivers()
