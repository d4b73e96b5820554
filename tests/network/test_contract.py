"""The network contract suite run against each built-in network driver."""

from __future__ import annotations

import pytest

from moorage.core.contract.network import NetworkDriverContract
from moorage.core.driver import NoOptions


class TestBridgeContract(NetworkDriverContract):
    @pytest.fixture
    def network_driver(self, bridge_factory, tmp_path):
        return bridge_factory


class TestHostContract(NetworkDriverContract):
    @pytest.fixture
    def network_driver(self, tmp_path):
        from moorage.drivers.network.host import HostDriver

        def make(home=None):
            home = home or tmp_path / "host-home"
            home.mkdir(exist_ok=True)
            return HostDriver(home, NoOptions(), {})

        return make


class TestNoneContract(NetworkDriverContract):
    @pytest.fixture
    def network_driver(self, tmp_path):
        from moorage.drivers.network.none import NoneDriver

        def make(home=None):
            home = home or tmp_path / "none-home"
            home.mkdir(exist_ok=True)
            return NoneDriver(home, NoOptions(), {})

        return make
