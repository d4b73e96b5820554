"""Choosing a graph driver: priorities, host probes, and the daemon using the selected one."""

from __future__ import annotations

import pytest

from moorage.core.sdk.driver import DaemonSettings, DriverContext, DriverFamily, DriverSettings
from moorage.core.sdk.errors import NotSupported
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.core.sdk.layers import NaiveDiffer, differ_for
from moorage.drivers.graph.btrfs import BtrfsDriver
from moorage.drivers.graph.overlay import OverlayDriver
from moorage.drivers.graph.vfs import VfsDriver

from .conftest import registered_graph_drivers


def family() -> DriverFamily:
    f = DriverFamily("graph", GraphDriver)
    f.register(registered_graph_drivers().values(), "test")
    return f


def test_documented_priority_order():
    assert [c.name for c in family().by_priority()][:3] == ["btrfs", "overlay", "vfs"]


def test_btrfs_is_not_supported_off_btrfs(tmp_path):
    with pytest.raises(NotSupported):
        BtrfsDriver(DriverContext.standalone(BtrfsDriver, tmp_path))


@pytest.mark.root
def test_auto_selection_on_ext4_picks_overlay(tmp_path):
    driver = family().select(None, None, tmp_path, {}, DriverSettings(DaemonSettings(tmp_path), {}), "test")
    try:
        assert driver.name == "overlay" and driver.home == tmp_path / "graph" / "overlay"
    finally:
        driver.cleanup()


def test_auto_selection_on_btrfs_picks_btrfs(btrfs_home):
    btrfs_home.mkdir()
    driver = family().select(None, None, btrfs_home, {}, DriverSettings(DaemonSettings(btrfs_home), {}), "test")
    assert driver.name == "btrfs"


@pytest.mark.root
def test_differ_for(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "v").mkdir()
    overlay, vfs = (OverlayDriver(DriverContext.standalone(OverlayDriver, tmp_path / "o")),
                    VfsDriver(DriverContext.standalone(VfsDriver, tmp_path / "v")))
    assert differ_for(overlay) is overlay
    assert isinstance(differ_for(vfs), NaiveDiffer)


@pytest.mark.parametrize("name", ["vfs", "overlay"])
def test_daemon_reports_the_configured_driver(daemon_factory, name):
    daemon = daemon_factory(config=f'[graph]\ndriver = "{name}"\n')
    info = daemon.client().get("/info").json()
    assert info["Driver"] == name
    assert ["Root Dir", str(daemon.root / "graph" / name)] in info["DriverStatus"]


def test_daemon_refuses_btrfs_off_btrfs(daemon_factory):
    daemon = daemon_factory(flags=["-s", "btrfs"], start=False)
    daemon.start(wait=False)
    assert daemon.proc.wait(30) != 0
    assert "btrfs" in daemon.log()


def test_hook_moorage_graph_register():
    """The hook returns driver classes; a plugin registered like a third party's adds its own."""
    from moorage.core.kernel.plugins import PluginManager
    from moorage.core.sdk.hookspecs import hookimpl

    class CopyDriver(VfsDriver):
        name = "copy"

    class ThirdParty:
        @hookimpl
        def moorage_graph_register(self):
            return [CopyDriver]

    pm = PluginManager()
    pm.load_entry_points(autoload=False)
    pm.register(ThirdParty(), name="third-party")
    results = pm.hook.moorage_graph_register()
    assert [CopyDriver] in results and [OverlayDriver] in results and [VfsDriver] in results
    pm.collect_drivers()
    assert pm.families["graph"].get("copy") is CopyDriver
    assert {"vfs", "overlay", "btrfs", "copy"} <= set(pm.families["graph"].names())
