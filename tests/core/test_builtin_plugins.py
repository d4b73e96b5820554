"""Built-in drivers load through moorage's own entry points, exactly as third-party ones do."""

from moorage.core.kernel.plugins import PluginManager

BUILTINS = {
    "graph": {"vfs", "overlay", "btrfs"},
    "exec": {"native", "lxc"},
    "network": {"bridge", "host", "none"},
    "registry": {"v2"},
}


def loaded_manager(**kwargs) -> PluginManager:
    pm = PluginManager()
    pm.load_entry_points(**kwargs)
    pm.collect_drivers()
    return pm


def test_every_builtin_is_an_entry_point_of_the_moorage_distribution():
    pm = loaded_manager()
    own = {p.name for p in pm.loaded if p.distribution == "moorage"}
    assert set().union(*BUILTINS.values()) <= own
    for family, names in BUILTINS.items():
        assert names <= set(pm.families[family].names()), family


def test_hook_moorage_exec_register():
    pm = loaded_manager()
    native = pm.families["exec"].get("native")
    assert native.__module__.startswith("moorage.drivers.exec.native")
    impls = {i.plugin_name for i in pm.hook.moorage_exec_register.get_hookimpls()}
    assert {"native", "lxc"} <= impls


def test_a_blocked_builtin_is_gone():
    pm = loaded_manager(blocked=["btrfs"])
    assert "btrfs" not in pm.families["graph"].names()
    assert {"vfs", "overlay"} <= set(pm.families["graph"].names())
