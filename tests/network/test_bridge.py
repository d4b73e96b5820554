"""The bridge driver beyond the contract: the bridge itself, its nftables table, DNAT and
masquerade seen from another namespace, container-to-container traffic, and a restart after
the daemon was killed."""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
from pyroute2 import IPRoute

from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.driver import DaemonSettings, DriverFamily, DriverSettings
from moorage.core.sdk.errors import ConfigError, Conflict, DriverError
from moorage.core.sdk.hookspecs.network import NetworkDriver, PortBinding
from moorage.core.testing.network import (
    host_links,
    namespace_state,
    new_links,
    refused,
    spawn_netns_process,
    tcp_exchange,
)
from moorage.drivers.network.bridge import BridgeDriver, links

from .conftest import free_test_subnet


@pytest.fixture
def container():
    made = []

    def make():
        box = spawn_netns_process()
        made.append(box)
        return box

    yield make
    for box in made:
        box.kill()


@pytest.fixture
def outside(container):
    """A namespace standing for a machine outside the bridge: a veth pair from the host
    (``host_ip``) to a process in a fresh namespace (``client_ip``) on a /30 of its own."""
    box = container()
    net = ipaddress.IPv4Network(free_test_subnet(), strict=False)
    host_ip, client_ip = net.network_address + 1, net.network_address + 2
    name = f"mtso{uuid.uuid4().hex[:8]}"
    with IPRoute() as ipr, links.namespace_fd(box.pid) as fd:
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": "eth0", "net_ns_fd": fd})
        index = links.link_index(ipr, name)
        ipr.addr("add", index=index, address=str(host_ip), prefixlen=24)
        ipr.link("set", index=index, state="up")
    try:
        with IPRoute(netns=f"/proc/{box.pid}/ns/net") as nsr:
            for ifname in ("lo", "eth0"):
                nsr.link("set", index=links.link_index(nsr, ifname), state="up")
            nsr.addr("add", index=links.link_index(nsr, "eth0"), address=str(client_ip), prefixlen=24)
            nsr.route("add", dst="0.0.0.0/0", gateway=str(host_ip))
        yield SimpleNamespace(box=box, host_ip=str(host_ip), client_ip=str(client_ip))
    finally:
        with IPRoute() as ipr:
            links.delete_link(ipr, name)


def client_code(host: str, port: int) -> str:
    return (f"import socket\ns = socket.create_connection(({host!r}, {port}), timeout=10)\n"
            "s.sendall(b'hi\\n')\ndata = b''\n"
            "while True:\n    c = s.recv(4096)\n    if not c: break\n    data += c\n"
            "print(data.decode(), end='')\n")


def bridge_link(name: str) -> dict | None:
    with IPRoute() as ipr:
        index = links.link_index(ipr, name)
        if index is None:
            return None
        link = ipr.get_links(index)[0]
        return {"kind": link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")), "mtu": link.get("IFLA_MTU"),
                "up": bool(link["flags"] & 1), "address": str(links.ipv4_address(ipr, index))}


def test_bridge_is_created_with_bip_and_first_container_gets_dot_two(bridge_factory, bridge_env, container):
    driver = bridge_factory(mtu=1400)
    assert bridge_link(bridge_env.name) == {"kind": "bridge", "mtu": 1400, "up": True, "address": bridge_env.bip}
    box = container()
    ep = driver.join(box.id, box.pid, {})
    gateway = ipaddress.IPv4Interface(bridge_env.bip)
    assert ep.ip_address == str(gateway.network.network_address + 2)
    assert (ep.gateway, ep.ip_prefix_len, ep.bridge) == (str(gateway.ip), 24, bridge_env.name)
    eth0 = namespace_state(box.pid)["links"]["eth0"]
    assert eth0["addresses"] == [f"{ep.ip_address}/24"]
    with IPRoute(netns=f"/proc/{box.pid}/ns/net") as nsr:
        assert nsr.get_links(links.link_index(nsr, "eth0"))[0].get("IFLA_MTU") == 1400
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "1"
    driver.release(box.id)
    driver.cleanup()
    assert bridge_link(bridge_env.name) is None, "a bridge the driver created and nobody uses is removed"


def test_existing_bridge_is_adopted_and_kept(bridge_factory, bridge_env, container):
    with IPRoute() as ipr:
        links.create_bridge(ipr, bridge_env.name, ipaddress.IPv4Interface(bridge_env.bip), 1500)
    driver = bridge_factory(bip=None)
    assert str(driver.address) == bridge_env.bip and not driver.created
    box = container()
    assert ipaddress.IPv4Address(driver.join(box.id, box.pid, {}).ip_address) in driver.address.network
    driver.release(box.id)
    driver.cleanup()
    assert bridge_link(bridge_env.name) is not None, "a bridge moorage did not create is never removed"


def link_mac(name: str, pid: int | None = None) -> str:
    """The MAC of interface ``name`` on the host, or in the network namespace of ``pid``."""
    with IPRoute(**({"netns": f"/proc/{pid}/ns/net"} if pid else {})) as ipr:
        return ipr.get_links(links.link_index(ipr, name))[0].get("IFLA_ADDRESS")


def mac_is_set(name: str) -> bool:
    """Whether the kernel keeps the bridge's MAC (set explicitly) rather than its ports' lowest."""
    return int(Path(f"/sys/class/net/{name}/addr_assign_type").read_text()) == links.NET_ADDR_SET


def plain_bridge(name: str, bip: str) -> None:
    """A bridge made without a MAC of its own, as a user or an earlier moorage made it."""
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        index = links.link_index(ipr, name)
        iface = ipaddress.IPv4Interface(bip)
        ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        ipr.link("set", index=index, state="up")


def test_macs_follow_addresses_and_the_bridge_keeps_its_own(bridge_factory, bridge_env, container):
    """With the kernel's defaults (a random MAC per veth, the bridge taking its ports' lowest),
    a reused address is unreachable from whoever cached the old MAC, and the gateway's MAC
    changes under every container as ports come and go (bench/soak.py found the first)."""
    driver = bridge_factory()
    gateway_mac = links.mac_for(ipaddress.IPv4Interface(bridge_env.bip).ip)
    assert link_mac(bridge_env.name) == gateway_mac and mac_is_set(bridge_env.name)
    boxes = [container() for _ in range(4)]
    for box in boxes:
        ep = driver.join(box.id, box.pid, {})
        assert link_mac("eth0", box.pid) == links.mac_for(ipaddress.IPv4Address(ep.ip_address))
        assert link_mac(bridge_env.name) == gateway_mac
    for box in boxes:
        driver.release(box.id)
        driver._wait_deleted()
        assert link_mac(bridge_env.name) == gateway_mac


def test_a_bridge_an_earlier_moorage_made_gets_a_mac_of_its_own(bridge_factory, bridge_env, tmp_path):
    plain_bridge(bridge_env.name, bridge_env.bip)
    home = tmp_path / "bridge-home"
    home.mkdir(mode=0o700)
    (home / "bridge.json").write_text(json.dumps({"name": bridge_env.name, "created": True,
                                                  "address": bridge_env.bip}))
    assert not mac_is_set(bridge_env.name)
    driver = bridge_factory(home=home)
    assert driver.created
    assert link_mac(bridge_env.name) == links.mac_for(ipaddress.IPv4Interface(bridge_env.bip).ip)
    assert mac_is_set(bridge_env.name)


def test_a_bridge_moorage_did_not_make_keeps_its_mac(bridge_factory, bridge_env):
    plain_bridge(bridge_env.name, bridge_env.bip)
    before = link_mac(bridge_env.name)
    driver = bridge_factory(bip=None)
    assert not driver.created
    assert link_mac(bridge_env.name) == before and not mac_is_set(bridge_env.name)


def test_bip_that_does_not_match_an_existing_bridge_is_refused(bridge_factory, bridge_env):
    with IPRoute() as ipr:
        links.create_bridge(ipr, bridge_env.name, ipaddress.IPv4Interface(bridge_env.bip), 1500)
    other = free_test_subnet()
    with pytest.raises(ConfigError, match="does not match"):
        bridge_factory(bip=other)


def test_an_interface_that_is_not_a_bridge_is_refused(bridge_factory, bridge_env):
    with IPRoute() as ipr:
        ipr.link("add", ifname=bridge_env.name, kind="veth", peer={"ifname": bridge_env.name + "p"})
    with pytest.raises(ConfigError, match="not a bridge"):
        bridge_factory()


@pytest.mark.parametrize("section, key", [
    ({"name": "a-name-longer-than-15"}, "name"),
    ({"name": "none"}, "name"),
    ({"bip": "10.1.2.0/24"}, "bip"),
    ({"bip": "not-an-address"}, "bip"),
    ({"table": "1bad table"}, "table"),
    ({"mtu": 20}, "mtu"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_options_are_config_errors(section, key):
    family = DriverFamily("network", NetworkDriver)
    family.register([BridgeDriver], "test")
    with pytest.raises(ConfigError, match=key):
        family.parse_options(BridgeDriver, section, "daemon.toml")


def test_drivers_are_registered_through_entry_points():
    manager = PluginManager()
    manager.load_entry_points(autoload=False)
    manager.collect_drivers()
    family = manager.families["network"]
    assert {"bridge", "host", "none"} <= set(family.names())
    assert family.by_priority()[0] is BridgeDriver, "bridge is the default"


def test_nft_table_holds_masquerade_and_port_mappings(bridge_factory, bridge_env, container):
    driver = bridge_factory()
    box = container()
    ep = driver.join(box.id, box.pid, {"80/tcp": [PortBinding("", 0)], "53/udp": [PortBinding("127.0.0.1", 0)]})
    tcp_port, udp_port = ep.ports["80/tcp"][0].host_port, ep.ports["53/udp"][0].host_port
    table = subprocess.run(["nft", "list", "table", "ip", bridge_env.table], capture_output=True, text=True,
                           check=True).stdout
    subnet = ipaddress.IPv4Interface(bridge_env.bip).network
    assert f"ip saddr {subnet} ip daddr != {subnet} masquerade" in table
    assert f"{tcp_port} : {ep.ip_address} . 80" in table
    assert f"127.0.0.1 . {udp_port} : {ep.ip_address} . 53" in table
    driver.leave(box.id)
    table = subprocess.run(["nft", "list", "table", "ip", bridge_env.table], capture_output=True, text=True,
                           check=True).stdout
    assert ep.ip_address not in table


def test_default_host_ip_comes_from_the_daemon(bridge_factory, container):
    driver = bridge_factory(default_ip="127.0.0.1")
    box = container()
    ep = driver.join(box.id, box.pid, {"80/tcp": [PortBinding("", 0), PortBinding("", 0)]})
    bindings = ep.ports["80/tcp"]
    assert [b.host_ip for b in bindings] == ["127.0.0.1", "127.0.0.1"]
    assert bindings[0].host_port != bindings[1].host_port
    for binding in bindings:
        assert tcp_exchange(binding.host_port).endswith(b"|hello\n")


def test_dnat_brings_outside_traffic_to_the_container(bridge_factory, container, outside):
    driver = bridge_factory()
    box = container()
    ep = driver.join(box.id, box.pid, {"80/tcp": [PortBinding("", 0)]})
    port = ep.ports["80/tcp"][0].host_port
    out = outside.box.run(client_code(outside.host_ip, port))
    assert out.returncode == 0, out.stderr
    # DNAT keeps the client's address; the userland proxy would show the gateway instead
    assert out.stdout == f"{outside.client_ip}|hi\n"


def test_outbound_traffic_is_masqueraded(bridge_factory, container, outside):
    driver = bridge_factory()
    box = container()
    driver.join(box.id, box.pid, {})
    out = box.run(client_code(outside.client_ip, 80))
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{outside.host_ip}|hi\n"


def test_containers_reach_each_other_and_published_ports_through_the_gateway(bridge_factory, container):
    driver = bridge_factory()
    a, b = container(), container()
    ep_a = driver.join(a.id, a.pid, {"80/tcp": [PortBinding("", 0)]})
    ep_b = driver.join(b.id, b.pid, {})
    direct = b.run(client_code(ep_a.ip_address, 80))
    assert direct.stdout == f"{ep_b.ip_address}|hi\n", direct.stderr
    port = ep_a.ports["80/tcp"][0].host_port
    hairpin = b.run(client_code(ep_a.gateway, port))
    assert hairpin.stdout == f"{ep_a.gateway}|hi\n", hairpin.stderr


def test_restart_after_the_daemon_was_killed(bridge_factory, bridge_env, container):
    first = bridge_factory()
    alive, dead = container(), container()
    ep_alive = first.join(alive.id, alive.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]})
    ep_dead = first.join(dead.id, dead.pid, {"81/tcp": [PortBinding("127.0.0.1", 0)]})
    port = ep_alive.ports["80/tcp"][0].host_port
    # SIGKILL: no cleanup; the process's sockets close, the table and the bridge stay
    first.proxy.stop()
    dead.kill()
    second = bridge_factory(home=first.home)
    assert second.created, "the bridge the first instance created is still moorage's"
    second.restore(alive.id, ep_alive)
    assert tcp_exchange(port).endswith(b"|hello\n")
    second.leave(dead.id)
    second.release(dead.id)
    third = container()
    assert second.join(third.id, third.pid, {}).ip_address == ep_dead.ip_address
    for box in (alive, third):
        second.release(box.id)
    second.cleanup()
    assert refused(port)
    assert bridge_link(bridge_env.name) is None
    table = subprocess.run(["nft", "list", "table", "ip", bridge_env.table], capture_output=True)
    assert table.returncode != 0


def test_cleanup_keeps_the_bridge_while_containers_are_attached(bridge_factory, bridge_env, container):
    driver = bridge_factory()
    box = container()
    ep = driver.join(box.id, box.pid, {})
    driver.cleanup()
    assert bridge_link(bridge_env.name) is not None
    second = bridge_factory(home=driver.home)
    second.restore(box.id, ep)
    assert namespace_state(box.pid)["links"]["eth0"]["up"]
    second.release(box.id)
    second.cleanup()
    assert bridge_link(bridge_env.name) is None


def test_status(bridge_factory, bridge_env):
    status = dict(bridge_factory().status())
    assert status["Bridge"] == bridge_env.name
    assert status["Bridge IP"] == bridge_env.bip
    assert status["NAT table"] == f"ip {bridge_env.table}"


def test_proxy_carries_a_large_payload_both_ways(bridge_factory, container):
    driver = bridge_factory()
    box = container()
    port = driver.join(box.id, box.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]}).ports["80/tcp"][0].host_port
    payload = bytes(range(97, 123)) * 40000 + b"\n"
    assert tcp_exchange(port, payload) == f"{driver.address.ip}|".encode() + payload


def test_concurrent_joins_get_distinct_addresses_and_ports(bridge_factory, container):
    driver = bridge_factory()
    boxes = [container() for _ in range(6)]
    with ThreadPoolExecutor(6) as pool:
        endpoints = list(pool.map(lambda b: driver.join(b.id, b.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]}),
                                  boxes))
    assert len({ep.ip_address for ep in endpoints}) == 6
    ports = {ep.ports["80/tcp"][0].host_port for ep in endpoints}
    assert len(ports) == 6
    for box in boxes:  # each namespace got exactly its own address
        eth0 = namespace_state(box.pid)["links"]["eth0"]["addresses"]
        assert len(eth0) == 1
    assert {namespace_state(b.pid)["links"]["eth0"]["addresses"][0].split("/")[0] for b in boxes} == \
        {ep.ip_address for ep in endpoints}
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda b: driver.release(b.id), boxes))
    assert all(refused(port) for port in ports)
    assert driver.pool.assigned() == {}


def test_restore_of_a_port_taken_meanwhile_is_a_conflict(bridge_factory, container):
    first = bridge_factory()
    box = container()
    ep = first.join(box.id, box.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]})
    port = ep.ports["80/tcp"][0].host_port
    first.cleanup()
    second = bridge_factory(home=first.home)
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # earlier tests' TIME_WAITs
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        with pytest.raises(Conflict, match=f"Port already in use: {port}"):
            second.restore(box.id, ep)
    assert second.proxy.forwards() == []


def test_auto_selection_picks_bridge_with_its_config_section(tmp_path, bridge_env):
    manager = PluginManager()
    manager.load_entry_points(autoload=False)
    manager.collect_drivers()
    family = manager.families["network"]
    sections = {"bridge": {"name": bridge_env.name, "table": bridge_env.table, "bip": bridge_env.bip}}
    settings = DriverSettings(DaemonSettings(tmp_path), {})
    driver = family.select(None, None, tmp_path, sections, settings, "daemon.toml")
    try:
        assert isinstance(driver, BridgeDriver)
        assert driver.home == tmp_path / "network" / "bridge"
        assert bridge_link(bridge_env.name)["address"] == bridge_env.bip
    finally:
        driver.cleanup()
    assert bridge_link(bridge_env.name) is None
    none = family.select("none", None, tmp_path, {}, settings, "daemon.toml")
    assert none.name == "none" and none.isolates and not none.publishes


def test_a_second_join_without_leave_is_a_conflict(bridge_factory, container):
    driver = bridge_factory()
    box, other = container(), container()
    ep = driver.join(box.id, box.pid, {})
    with pytest.raises(Conflict, match="already connected"):
        driver.join(box.id, other.pid, {})
    assert set(namespace_state(other.pid)["links"]) == {"lo"}
    assert namespace_state(box.pid)["links"]["eth0"]["addresses"] == [f"{ep.ip_address}/24"]


def test_the_contracts_leftover_check_sees_a_joined_veth(bridge_factory, container):
    driver = bridge_factory()
    box, stranger = container(), container()
    before = host_links()
    driver.join(box.id, box.pid, {})
    assert new_links(before, box) == {driver._veth_name(box.id)}
    assert new_links(before, stranger) == set(), "a veth into another namespace is someone else's"


def test_a_failed_start_leaves_no_bridge(bridge_factory, bridge_env, tmp_path):
    home = tmp_path / "not-a-dir"
    home.mkdir()
    (home / "addresses.json").mkdir()  # the address pool cannot be read: the start fails late
    with pytest.raises(IsADirectoryError):
        bridge_factory(home=home)
    assert bridge_link(bridge_env.name) is None
    assert subprocess.run(["nft", "list", "table", "ip", bridge_env.table], capture_output=True).returncode != 0


def test_a_leftover_host_veth_of_the_same_name_is_replaced(bridge_factory, bridge_env, container):
    """A container killed along with the daemon leaves its host veth; the next join of that
    container makes the pair again (the netlink request's EEXIST, then a deletion)."""
    driver = bridge_factory()
    box = container()
    veth = driver._veth_name(box.id)
    with IPRoute() as ipr:
        ipr.link("add", ifname=veth, kind="veth", peer={"ifname": f"mtsl{uuid.uuid4().hex[:8]}"})
    try:
        ep = driver.join(box.id, box.pid, {})
        state = namespace_state(box.pid)
        assert state["links"]["eth0"] == {"up": True, "addresses": [f"{ep.ip_address}/{ep.ip_prefix_len}"]}
        with IPRoute() as ipr:
            link = ipr.get_links(links.link_index(ipr, veth))[0]
            assert link.get("IFLA_MASTER") == links.link_index(ipr, bridge_env.name)
    finally:
        driver.release(box.id)
        driver._wait_deleted()
        with IPRoute() as ipr:
            links.delete_link(ipr, veth)
    driver.cleanup()


def test_a_join_into_a_missing_bridge_fails_and_leaves_nothing(bridge_factory, bridge_env, container):
    driver = bridge_factory()
    box = container()
    before = host_links()
    with pytest.raises(DriverError, match="does not exist"):
        links.attach_container(box.pid, driver._veth_name(box.id), "mtsnobridge0",
                               ipaddress.IPv4Interface("10.99.0.2/24"), "10.99.0.1", 1500)
    assert new_links(before, box) == set()
    driver.cleanup()
