"""The network driver contract suite: one set of behaviour checks for every network driver.

Run it against an installed driver by name (``pytest --pyargs moorage.core.testing
--moorage-driver network=NAME [--moorage-driver-options FILE.toml]``), or from a driver
package's own tests by subclassing ``NetworkDriverContract`` and overriding ``moorage_driver``
(see ``moorage.core.testing.plugin``). ``driver_factory()`` builds a new instance; a second
call stands for a restarted daemon. Give a driver that makes host-side state options of the
test's own (a bridge name, nftables table and subnet), so that the suite never touches a
running daemon's network.

A "container" here is a process in a fresh network namespace (``unshare --net``) running a
small Python server on port 80: TCP answers ``"<peer ip>|<first line>"``, UDP answers
``"udp|<peer ip>|<datagram>"``. It is killed when the test ends. Checks that need an isolating
driver (``isolates``) or one that publishes ports (``publishes``) are skipped for the others.
Only 127.0.0.1 and the driver's own addresses are contacted.
"""

from __future__ import annotations

import ipaddress
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import pytest

from moorage.core.sdk.errors import Conflict, InvalidParameter, MoorageError
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding

SERVER = r"""
import socket, sys, threading

def tcp():
    srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", 80)); srv.listen(16)
    while True:
        conn, peer = srv.accept()
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()

def serve(conn, peer):
    data = b""
    while not data.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    conn.sendall(peer[0].encode() + b"|" + data)
    conn.close()

def udp():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); srv.bind(("0.0.0.0", 80))
    while True:
        data, peer = srv.recvfrom(4096)
        srv.sendto(b"udp|" + peer[0].encode() + b"|" + data, peer)

threading.Thread(target=tcp, daemon=True).start()
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""


@dataclass
class NetnsProcess:
    """A process in a network namespace of its own, serving on port 80."""

    proc: subprocess.Popen
    id: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def run(self, code: str, timeout: float = 20) -> subprocess.CompletedProcess:
        """Run Python ``code`` inside this process's network namespace."""
        return subprocess.run(["nsenter", f"--net=/proc/{self.pid}/ns/net", sys.executable, "-c", code],
                              capture_output=True, text=True, timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


def spawn_netns_process(timeout: float = 20) -> NetnsProcess:
    """A process in a new network namespace with ``lo`` up: what an exec driver hands over."""
    proc = subprocess.Popen(["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                             sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    box = NetnsProcess(proc, uuid.uuid4().hex + uuid.uuid4().hex)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready or proc.stdout.readline().strip() != b"ready":
        box.kill()
        raise RuntimeError("the test container process did not start")
    return box


#: host ports below the kernel's ephemeral ports and the daemons' own allocator (from 49153),
#: which every daemon on a host draws from: a test that needs a port nobody else takes
#: while its daemon is down publishes one of these
QUIET_HOST_PORTS = range(20000, 30000)


def quiet_host_port(rng: random.Random | None = None) -> int:
    """A port of ``QUIET_HOST_PORTS`` free on 127.0.0.1 now."""
    while True:
        port = (rng or random).choice(QUIET_HOST_PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


def host_links() -> set[str]:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        return {link.get("ifname") for link in ipr.get_links()}


def new_links(before: set[str], *boxes: NetnsProcess) -> set[str]:
    """Host interfaces that are not in ``before``, leaving out veths whose other end lives in a
    namespace that is none of ``boxes`` (another test's containers, on a shared machine)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ours = set()
        for box in boxes:
            info = ipr.get_netnsid(pid=box.pid) or {}
            if info.get("nsid") is not None and info["nsid"] >= 0:
                ours.add(info["nsid"])
        found = set()
        for link in ipr.get_links():
            name = link.get("ifname")
            if name in before:
                continue
            peer_ns = link.get("IFLA_LINK_NETNSID")
            if peer_ns is not None and peer_ns not in ours:
                continue
            found.add(name)
        return found


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def namespace_state(pid: int) -> dict:
    """Interfaces (up flag, IPv4 addresses) and IPv4 routes of the namespace of ``pid``."""
    from pyroute2 import IPRoute

    with IPRoute(netns=f"/proc/{pid}/ns/net") as nsr:
        links = {}
        for link in nsr.get_links():
            addrs = [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" for a in nsr.get_addr(family=socket.AF_INET,
                                                                                        index=link["index"])]
            links[link.get("ifname")] = {"up": bool(link["flags"] & 1), "addresses": addrs}
        routes = []
        for route in nsr.get_routes(family=socket.AF_INET, table=254):
            routes.append((f"{route.get('RTA_DST') or '0.0.0.0'}/{route['dst_len']}", route.get("RTA_GATEWAY")))
        return {"links": links, "routes": routes}


def settle(check, timeout: float = 5.0):
    """``check()`` until it returns a truthy value or ``timeout`` passes; the last result.
    (The kernel tears a dead namespace's interfaces down asynchronously.)"""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def tcp_exchange(port: int, payload: bytes = b"hello\n", host: str = "127.0.0.1", timeout: float = 10) -> bytes:
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(payload)
        data = b""
        while chunk := conn.recv(4096):
            data += chunk
        return data


def udp_exchange(port: int, payload: bytes = b"ping", host: str = "127.0.0.1", timeout: float = 10) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        deadline = time.monotonic() + timeout
        while True:  # UDP may be lost while the forwarder starts; resend until answered
            sock.sendto(payload, (host, port))
            try:
                return sock.recvfrom(4096)[0]
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise


def free_port(proto: str = "tcp") -> int:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused(port: int) -> bool:
    try:
        tcp_exchange(port, timeout=2)
    except OSError:
        return True
    return False


class NetworkDriverContract:
    """Behaviour every network driver must show, against ``moorage_driver``."""

    family = "network"

    # -- helpers ---------------------------------------------------------------------------
    @pytest.fixture
    def container(self):
        """``container()`` -> a new ``NetnsProcess``; all are killed when the test ends."""
        made: list[NetnsProcess] = []

        def make() -> NetnsProcess:
            box = spawn_netns_process()
            made.append(box)
            return box

        yield make
        for box in made:
            box.kill()

    @staticmethod
    def need(driver: NetworkDriver, isolates: bool = False, publishes: bool = False, addresses: bool = False,
             endpoint: Endpoint | None = None) -> None:
        if isolates and not driver.isolates:
            pytest.skip(f"{driver.name} does not give containers their own namespace")
        if publishes and not driver.publishes:
            pytest.skip(f"{driver.name} does not publish ports")
        if addresses and endpoint is not None and not endpoint.ip_address:
            pytest.skip(f"{driver.name} gives containers no address")

    # -- identity --------------------------------------------------------------------------
    def test_driver_names_itself(self, driver_factory):
        driver = driver_factory()
        assert isinstance(driver, NetworkDriver)
        assert driver.name and type(driver).name == driver.name
        status = driver.status()
        assert status and all(isinstance(k, str) and isinstance(v, str) for k, v in status)

    # -- join ------------------------------------------------------------------------------
    def test_join_configures_the_namespace(self, driver_factory, container):
        driver = driver_factory()
        self.need(driver, isolates=True)
        box = container()
        ep = driver.join(box.id, box.pid, {})
        state = namespace_state(box.pid)
        assert state["links"]["lo"]["up"]
        assert "127.0.0.1/8" in state["links"]["lo"]["addresses"]
        others = {name: info for name, info in state["links"].items() if name != "lo"}
        if not ep.ip_address:
            assert others == {}, "a driver that gives no address must leave only loopback"
            return
        assert ep.ip_prefix_len > 0
        with_address = {n: i for n, i in others.items() if f"{ep.ip_address}/{ep.ip_prefix_len}" in i["addresses"]}
        assert len(with_address) == 1, state
        assert next(iter(with_address.values()))["up"]
        if ep.gateway:
            subnet = ipaddress.IPv4Interface(f"{ep.ip_address}/{ep.ip_prefix_len}").network
            assert ipaddress.IPv4Address(ep.gateway) in subnet
            assert ("0.0.0.0/0", ep.gateway) in state["routes"]

    def test_join_without_isolation_returns_an_empty_endpoint(self, driver_factory, container):
        driver = driver_factory()
        if driver.isolates:
            pytest.skip(f"{driver.name} isolates containers")
        ep = driver.join("c" * 64, os.getpid(), {"80/tcp": [PortBinding("127.0.0.1", 0)]})
        assert (ep.ip_address, ep.ip_prefix_len, ep.gateway, ep.bridge) == ("", 0, "", "")
        assert ep.ports == {"80/tcp": None}
        driver.leave("c" * 64)
        driver.release("c" * 64)

    def test_join_refuses_the_daemons_own_namespace(self, driver_factory):
        driver = driver_factory()
        self.need(driver, isolates=True)
        before = host_links()
        with pytest.raises(MoorageError):
            driver.join("d" * 64, os.getpid(), {})
        assert settle(lambda: new_links(before) == set())

    def test_exposed_ports_without_bindings_are_none(self, driver_factory, container):
        driver = driver_factory()
        box = container()
        ep = driver.join(box.id, box.pid, {"80/tcp": [], "53/udp": []})
        assert ep.ports == {"80/tcp": None, "53/udp": None}

    @pytest.mark.parametrize("key", ["eighty/tcp", "80/sctp", "0/tcp", "70000/udp"])
    def test_invalid_port_key_is_refused_and_leaves_nothing(self, driver_factory, container, key):
        driver = driver_factory()
        box = container()
        before = host_links()
        with pytest.raises(InvalidParameter):
            driver.join(box.id, box.pid, {key: [PortBinding("127.0.0.1", 0)]})
        assert settle(lambda: new_links(before, box) == set())
        if driver.isolates:
            assert set(namespace_state(box.pid)["links"]) <= {"lo"}

    # -- leave and release -----------------------------------------------------------------
    def test_leave_removes_the_host_side_and_is_idempotent(self, driver_factory, container):
        driver = driver_factory()
        box = container()
        before = host_links()
        driver.join(box.id, box.pid, {})
        driver.leave(box.id)
        assert settle(lambda: new_links(before, box) == set())
        driver.leave(box.id)
        driver.release(box.id)
        driver.release(box.id)
        driver.leave("never-joined")
        driver.release("never-joined")

    def test_two_containers_get_different_addresses(self, driver_factory, container):
        driver = driver_factory()
        a, b = container(), container()
        ep_a = driver.join(a.id, a.pid, {})
        self.need(driver, addresses=True, endpoint=ep_a)
        ep_b = driver.join(b.id, b.pid, {})
        assert ep_a.ip_address != ep_b.ip_address
        assert (ep_a.gateway, ep_a.ip_prefix_len, ep_a.bridge) == (ep_b.gateway, ep_b.ip_prefix_len, ep_b.bridge)

    def test_address_is_kept_after_leave_and_given_back_by_release(self, driver_factory, container):
        driver = driver_factory()
        a, b, c = container(), container(), container()
        ep_a = driver.join(a.id, a.pid, {})
        self.need(driver, addresses=True, endpoint=ep_a)
        driver.leave(a.id)
        ep_b = driver.join(b.id, b.pid, {})
        assert ep_b.ip_address != ep_a.ip_address, "an address stays reserved until release"
        again = container()
        assert driver.join(a.id, again.pid, {}).ip_address == ep_a.ip_address
        driver.release(a.id)
        assert driver.join(c.id, c.pid, {}).ip_address == ep_a.ip_address, "a released address is offered next"

    def test_addresses_survive_a_new_driver_instance(self, driver_factory, container):
        first = driver_factory()
        a, b = container(), container()
        ep_a = first.join(a.id, a.pid, {})
        self.need(first, addresses=True, endpoint=ep_a)
        driver_factory.shutdown(first)  # the daemon stops; the container keeps running
        second = driver_factory()
        second.restore(a.id, ep_a)
        ep_b = second.join(b.id, b.pid, {})
        assert ep_b.ip_address != ep_a.ip_address
        second.release(a.id)
        second.release(b.id)

    def test_reservation_without_restore_survives_a_new_instance(self, driver_factory, container):
        first = driver_factory()
        a, b = container(), container()
        ep_a = first.join(a.id, a.pid, {})
        self.need(first, addresses=True, endpoint=ep_a)
        first.leave(a.id)
        driver_factory.shutdown(first)
        second = driver_factory()
        assert second.join(b.id, b.pid, {}).ip_address != ep_a.ip_address
        again = container()
        assert second.join(a.id, again.pid, {}).ip_address == ep_a.ip_address

    # -- publishing ------------------------------------------------------------------------
    def test_published_tcp_port_reaches_the_container_on_loopback(self, driver_factory, container):
        driver = driver_factory()
        self.need(driver, publishes=True)
        box = container()
        ep = driver.join(box.id, box.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]})
        [binding] = ep.ports["80/tcp"]
        assert binding.host_ip == "127.0.0.1"
        assert 49153 <= binding.host_port <= 65535
        peer, _, echoed = tcp_exchange(binding.host_port).partition(b"|")
        assert echoed == b"hello\n"
        assert peer.decode() == ep.gateway or not ep.gateway
        driver.leave(box.id)
        assert refused(binding.host_port)

    def test_published_udp_port_reaches_the_container_on_loopback(self, driver_factory, container):
        driver = driver_factory()
        self.need(driver, publishes=True)
        box = container()
        ep = driver.join(box.id, box.pid, {"80/udp": [PortBinding("127.0.0.1", 0)]})
        [binding] = ep.ports["80/udp"]
        assert udp_exchange(binding.host_port).startswith(b"udp|")
        assert udp_exchange(binding.host_port, b"second").endswith(b"|second")

    def test_explicit_host_port_and_default_host_ip(self, driver_factory, container):
        driver = driver_factory()
        self.need(driver, publishes=True)
        box = container()
        port = free_port()
        ep = driver.join(box.id, box.pid, {"80/tcp": [PortBinding("", port)], "81/tcp": []})
        [binding] = ep.ports["80/tcp"]
        assert binding.host_port == port
        assert binding.host_ip == "0.0.0.0"
        assert ep.ports["81/tcp"] is None
        assert tcp_exchange(port).endswith(b"|hello\n")

    def test_random_host_ports_rotate(self, driver_factory, container):
        driver = driver_factory()
        self.need(driver, publishes=True)
        a, b = container(), container()
        p1 = driver.join(a.id, a.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]}).ports["80/tcp"][0].host_port
        driver.leave(a.id)
        p2 = driver.join(b.id, b.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]}).ports["80/tcp"][0].host_port
        assert p2 != p1, "a port given back is not reused at once"

    def test_port_held_by_another_program_is_a_conflict(self, driver_factory, container):
        driver = driver_factory()
        self.need(driver, publishes=True)
        probe, box, other = container(), container(), container()
        first_address = driver.join(probe.id, probe.pid, {}).ip_address
        driver.release(probe.id)
        before = host_links()
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen(1)
            port = holder.getsockname()[1]
            with pytest.raises(Conflict, match=f"Port already in use: {port}"):
                driver.join(box.id, box.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)],
                                              "81/tcp": [PortBinding("127.0.0.1", port)]})
        assert settle(lambda: new_links(before, box) == set())
        assert set(namespace_state(box.pid)["links"]) <= {"lo"}
        assert driver.join(other.id, other.pid, {}).ip_address == first_address, "the failed join kept its address"

    def test_port_held_by_another_container_is_a_conflict(self, driver_factory, container):
        driver = driver_factory()
        self.need(driver, publishes=True)
        a, b = container(), container()
        port = driver.join(a.id, a.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]}).ports["80/tcp"][0].host_port
        with pytest.raises(Conflict, match=f"Port already in use: {port}"):
            driver.join(b.id, b.pid, {"80/tcp": [PortBinding("127.0.0.1", port)]})
        assert tcp_exchange(port).endswith(b"|hello\n"), "the first container keeps its port"
        driver.leave(a.id)
        ep = driver.join(b.id, b.pid, {"80/tcp": [PortBinding("127.0.0.1", port)]})
        assert ep.ports["80/tcp"][0].host_port == port

    def test_restore_reestablishes_published_ports(self, driver_factory, container):
        first = driver_factory()
        self.need(first, publishes=True)
        box = container()
        ep = first.join(box.id, box.pid, {"80/tcp": [PortBinding("127.0.0.1", 0)]})
        port = ep.ports["80/tcp"][0].host_port
        driver_factory.shutdown(first)
        assert refused(port), "cleanup stops the proxies"
        second = driver_factory()
        second.restore(box.id, ep)
        assert tcp_exchange(port).endswith(b"|hello\n")
        second.leave(box.id)
        assert refused(port)

    # -- shutdown --------------------------------------------------------------------------
    def test_cleanup_leaves_nothing_behind(self, driver_factory, container):
        links_before, tables_before = host_links(), nft_tables()
        driver = driver_factory()
        a, b = container(), container()
        ports = {"80/tcp": [PortBinding("127.0.0.1", 0)]} if driver.publishes else {}
        ep = driver.join(a.id, a.pid, ports)
        driver.join(b.id, b.pid, {})
        driver.leave(a.id)
        driver.release(a.id)
        driver.release(b.id)
        driver_factory.shutdown(driver)
        assert settle(lambda: new_links(links_before, a, b) == set()), new_links(links_before, a, b)
        assert settle(lambda: nft_tables() - tables_before == set()), nft_tables() - tables_before
        for bindings in ep.ports.values():
            for binding in bindings or []:
                assert refused(binding.host_port)

