"""The graph driver contract suite, run against every built-in graph driver."""

from __future__ import annotations

import pytest

from moorage.core.contract.graph import GraphDriverContract

from .conftest import BUILTIN, registered_graph_drivers


def test_builtin_drivers_are_registered_through_entry_points():
    assert set(BUILTIN) <= set(registered_graph_drivers())


@pytest.mark.parametrize("name", BUILTIN)
class TestBuiltinGraphDriver(GraphDriverContract):
    @pytest.fixture
    def graph_home(self, name, tmp_path, request):
        if name == "btrfs":
            return request.getfixturevalue("btrfs_home")
        return tmp_path / "graph-home"

    @pytest.fixture
    def graph_driver_factory(self, name):
        cls = registered_graph_drivers()[name]
        return lambda home: cls(home, cls.Options(), {"root": home})
