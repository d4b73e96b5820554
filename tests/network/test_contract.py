"""The network contract suite run against each built-in network driver by name, as a third party
runs it (``--moorage-driver network=NAME``): through ``DriverFamily.create``, with the bridge's
options given as a config file gives them (a bridge, nft table and subnet of the test's own)."""

from __future__ import annotations

import pytest

from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.network import NetworkDriverContract


class TestBuiltinNetworkDriver(NetworkDriverContract):
    @pytest.fixture(params=["bridge", "host", "none"])
    def moorage_driver(self, request) -> DriverUnderTest:
        if request.param == "bridge":
            env = request.getfixturevalue("bridge_env")
            return DriverUnderTest.from_toml("network", "bridge", f'[network.bridge]\nname = "{env.name}"\n'
                                             f'table = "{env.table}"\nbip = "{env.bip}"\n')
        return DriverUnderTest.from_toml("network", request.param)
