"""The persistent address pool and the host-port allocator, and the bridge address choice."""

from __future__ import annotations

import ipaddress
import json

import pytest

from moorage.core.sdk.errors import Conflict, DriverError, InvalidParameter
from moorage.drivers.network.bridge.ipam import AddressPool
from moorage.drivers.network.bridge.links import BRIDGE_CANDIDATES, choose_bridge_address
from moorage.drivers.network.common import HostPorts, PortKey, parse_host_port, parse_port_key


def pool(tmp_path, cidr="172.17.42.1/16") -> AddressPool:
    return AddressPool(tmp_path / "addresses.json", ipaddress.IPv4Interface(cidr))


def test_first_address_is_dot_two_like_docker(tmp_path):
    assert pool(tmp_path).allocate("a") == "172.17.0.2"


def test_addresses_are_sequential_and_stable_per_owner(tmp_path):
    p = pool(tmp_path, "10.9.8.1/24")
    assert [p.allocate(x) for x in "abc"] == ["10.9.8.2", "10.9.8.3", "10.9.8.4"]
    assert p.allocate("b") == "10.9.8.3"


def test_released_address_is_offered_next(tmp_path):
    p = pool(tmp_path, "10.9.8.1/24")
    a, _ = p.allocate("a"), p.allocate("b")
    assert p.release("a") == a
    assert p.allocate("c") == a
    assert p.allocate("d") == "10.9.8.4"
    assert p.release("unknown") is None


def test_gateway_network_and_broadcast_are_skipped_and_the_pool_wraps(tmp_path):
    p = pool(tmp_path, "10.9.8.5/29")  # .0 network, .1 skipped like Docker, .5 gateway, .7 broadcast
    got = [p.allocate(str(i)) for i in range(4)]
    assert got == ["10.9.8.2", "10.9.8.3", "10.9.8.4", "10.9.8.6"]
    with pytest.raises(DriverError, match="no unallocated IP"):
        p.allocate("full")
    p.release("1")
    p.release("2")
    p._released.clear()  # noqa: SLF001 - force the sequential path: it must wrap around
    assert p.allocate("x") == "10.9.8.3"


def test_reservations_survive_a_new_pool_on_the_same_file(tmp_path):
    p = pool(tmp_path, "10.9.8.1/24")
    p.allocate("a")
    p.allocate("b")
    p.release("a")
    again = pool(tmp_path, "10.9.8.1/24")
    assert again.assigned() == {"b": "10.9.8.3"}
    assert again.allocate("c") == "10.9.8.2"
    assert again.allocate("d") == "10.9.8.4"
    saved = json.loads((tmp_path / "addresses.json").read_text())
    assert saved["network"] == "10.9.8.0/24" and saved["assigned"]["d"] == "10.9.8.4"


def test_a_changed_subnet_starts_afresh(tmp_path):
    pool(tmp_path, "10.9.8.1/24").allocate("a")
    assert pool(tmp_path, "10.9.9.1/24").assigned() == {}


def test_reserve(tmp_path):
    p = pool(tmp_path, "10.9.8.1/24")
    p.reserve("a", "10.9.8.50")
    assert p.get("a") == "10.9.8.50"
    with pytest.raises(Conflict):
        p.reserve("b", "10.9.8.50")
    with pytest.raises(DriverError):
        p.reserve("b", "10.9.9.50")
    with pytest.raises(DriverError):
        p.reserve("b", "10.9.8.1")


@pytest.mark.parametrize("key, expected", [("80/tcp", PortKey(80, "tcp")), ("53/UDP", PortKey(53, "udp")),
                                           ("8080", PortKey(8080, "tcp"))])
def test_port_keys(key, expected):
    assert parse_port_key(key) == expected
    assert str(parse_port_key(key)) == f"{expected.port}/{expected.proto}"


@pytest.mark.parametrize("key", ["", "/tcp", "x/tcp", "80/sctp", "0/tcp", "65536/tcp", "-1/udp"])
def test_bad_port_keys(key):
    with pytest.raises(InvalidParameter):
        parse_port_key(key)


def test_host_port_values():
    assert parse_host_port("") == 0
    assert parse_host_port("8080") == 8080
    for bad in ("http", "70000", -5):
        with pytest.raises(InvalidParameter):
            parse_host_port(bad)


def test_host_ports_rotate_per_protocol_and_skip_held_ones():
    ports = HostPorts(49153, 49156)
    ports.hold("tcp", 49154)
    gen = ports.candidates("tcp")
    assert next(gen) == 49153
    assert next(ports.candidates("tcp")) == 49155, "rotating, and 49154 is held"
    assert next(ports.candidates("udp")) == 49153, "each protocol has its own range"
    ports.free("tcp", 49153)
    assert next(ports.candidates("tcp")) == 49156
    assert next(ports.candidates("tcp")) == 49153, "wraps around"
    with pytest.raises(Conflict, match="Port already in use: 49154"):
        ports.hold("tcp", 49154)


def test_bridge_address_choice_follows_dockers_list():
    assert str(choose_bridge_address([], [])) == "172.17.42.1/16"
    taken = [ipaddress.IPv4Network("172.17.0.0/16")]
    assert str(choose_bridge_address(taken, [])) == "10.0.42.1/16"
    taken.append(ipaddress.IPv4Network("10.0.0.0/8"))
    assert str(choose_bridge_address(taken, [ipaddress.IPv4Address("172.16.42.53")])) == "172.16.43.1/24"
    every = [ipaddress.IPv4Interface(c).network for c in BRIDGE_CANDIDATES]
    with pytest.raises(DriverError, match="Could not find a free IP address range"):
        choose_bridge_address(every, [])
