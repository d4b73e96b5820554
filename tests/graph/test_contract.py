"""The graph driver contract suite, run against every built-in graph driver by name, as a third
party runs it (``--moorage-driver graph=NAME``): through ``DriverFamily.create``."""

from __future__ import annotations

import pytest

from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.graph import GraphDriverContract

from .conftest import BUILTIN, registered_graph_drivers


def test_builtin_drivers_are_registered_through_entry_points():
    assert set(BUILTIN) <= set(registered_graph_drivers())


class TestBuiltinGraphDriver(GraphDriverContract):
    @pytest.fixture(params=BUILTIN)
    def moorage_driver(self, request) -> DriverUnderTest:
        if request.param == "btrfs":  # its root on a loop-mounted btrfs, as an options file would put it
            mount = request.getfixturevalue("btrfs_mount")
            return DriverUnderTest.from_toml("graph", "btrfs", f'[daemon]\nroot = "{mount}"\n')
        return DriverUnderTest.from_toml("graph", request.param)
