"""Fixtures of the graph driver tests: the built-in drivers and a loop-mounted btrfs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from moorage.core.kernel.plugins import PluginManager

BUILTIN = ("vfs", "overlay", "btrfs")


def registered_graph_drivers() -> dict[str, type]:
    """The graph driver classes moorage's own entry points register."""
    pm = PluginManager()
    pm.load_entry_points(autoload=False)
    pm.collect_drivers()
    family = pm.families["graph"]
    return {name: family.get(name) for name in family.names()}


@pytest.fixture
def btrfs_home(btrfs_mount) -> Path:
    return btrfs_mount / f"home-{uuid.uuid4().hex[:8]}"
