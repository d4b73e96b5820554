"""Fixtures for the network driver tests: a test-only bridge name, nft table and subnet, and
finalizers that remove them (and any veth left on the bridge) whatever the test did."""

from __future__ import annotations

import ipaddress
import random
import subprocess
import uuid
from dataclasses import dataclass

import pytest
from pyroute2 import IPRoute

from moorage.core.sdk.driver import DaemonSettings, DriverContext, FamilySettings
from moorage.drivers.network.bridge import links


@dataclass
class BridgeEnv:
    name: str
    table: str
    bip: str

    def options(self, **extra):
        from moorage.drivers.network.bridge import BridgeOptions

        return BridgeOptions(**{"name": self.name, "table": self.table, "bip": self.bip, **extra})


def free_test_subnet() -> str:
    """A /24 in 10.200.0.0–10.250.255.0 that overlaps no route of the host."""
    with IPRoute() as ipr:
        routes = links.host_routes(ipr)
    for _ in range(200):
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(r) for r in routes):
            return f"{net.network_address + 1}/24"
    raise RuntimeError("no free test subnet")


def remove_bridge_and_table(name: str, table: str) -> None:
    with IPRoute() as ipr:
        index = links.link_index(ipr, name)
        if index is not None:
            for link in ipr.get_links():
                if link.get("IFLA_MASTER") == index:
                    links.delete_link(ipr, link.get("ifname"))
            links.delete_link(ipr, name)
    subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


@pytest.fixture
def bridge_env():
    suffix = uuid.uuid4().hex[:8]
    env = BridgeEnv(name=f"mtst{suffix}", table=f"moorage-test-{suffix}", bip=free_test_subnet())
    yield env
    remove_bridge_and_table(env.name, env.table)


@pytest.fixture
def bridge_factory(tmp_path, bridge_env):
    """``bridge_factory(home=None, **options)`` -> a BridgeDriver on the test's bridge; every
    instance is cleaned up at the end (the bridge_env finalizer then removes any remains)."""
    from moorage.drivers.network.bridge import BridgeDriver

    made = []

    def make(home=None, default_ip="0.0.0.0", **extra):
        home = home or tmp_path / "bridge-home"
        home.mkdir(mode=0o700, parents=True, exist_ok=True)  # as DriverFamily.create does
        daemon = DaemonSettings(tmp_path, default_ip=default_ip)
        driver = BridgeDriver(DriverContext(home, bridge_env.options(**extra), daemon, FamilySettings()))
        made.append(driver)
        return driver

    yield make
    for driver in made:
        try:
            driver.cleanup()
        except Exception:  # already cleaned up by the test, or half-made: the env finalizer remains
            pass
