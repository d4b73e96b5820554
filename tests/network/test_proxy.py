"""The userland proxy on its own, against servers on 127.0.0.1."""

from __future__ import annotations

import socket
import threading

import pytest

from moorage.core.sdk.errors import Conflict, DriverError
from moorage.core.testing.network import settle
from moorage.drivers.network.bridge.proxy import Forward, ProxyServer


@pytest.fixture
def proxy():
    server = ProxyServer("test-proxy", udp_idle=0.3)
    yield server
    server.stop()


@pytest.fixture
def udp_echo():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(4096)
            except TimeoutError:
                continue
            sock.sendto(b"echo:" + data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_udp_clients_are_forwarded_and_dropped_when_idle(proxy, udp_echo):
    forward = Forward("udp", "127.0.0.1", free_port(socket.SOCK_DGRAM), "127.0.0.1", udp_echo)
    proxy.open(forward)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(5)
        client.sendto(b"one", ("127.0.0.1", forward.host_port))
        assert client.recvfrom(4096)[0] == b"echo:one"
        assert proxy.udp_clients(forward) == 1
        assert settle(lambda: proxy.udp_clients(forward) == 0), "an idle client is dropped"
        client.sendto(b"two", ("127.0.0.1", forward.host_port))
        assert client.recvfrom(4096)[0] == b"echo:two", "and comes back with its next datagram"


def test_tcp_connection_to_a_closed_container_port_is_closed(proxy):
    forward = Forward("tcp", "127.0.0.1", free_port(), "127.0.0.1", free_port())
    proxy.open(forward)
    with socket.create_connection(("127.0.0.1", forward.host_port), timeout=15) as client:
        assert client.recv(10) == b""


def test_closing_a_forward_ends_its_open_connections(proxy):
    with socket.socket() as target:
        target.bind(("127.0.0.1", 0))
        target.listen(1)
        forward = Forward("tcp", "127.0.0.1", free_port(), "127.0.0.1", target.getsockname()[1])
        proxy.open(forward)
        with socket.create_connection(("127.0.0.1", forward.host_port), timeout=15) as client:
            upstream, _ = target.accept()
            with upstream:
                client.sendall(b"ping")
                assert upstream.recv(4) == b"ping"
                upstream.sendall(b"pong")
                assert client.recv(4) == b"pong"
                proxy.close(forward)
                assert client.recv(10) == b""
                assert upstream.recv(10) == b""
    assert proxy.forwards() == []


def test_binding_errors(proxy):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        with pytest.raises(Conflict, match=f"Port already in use: {port}"):
            proxy.open(Forward("udp", "127.0.0.1", port, "127.0.0.1", 1))
    with pytest.raises(DriverError, match="not on this host"):
        proxy.open(Forward("tcp", "192.0.2.1", free_port(), "127.0.0.1", 1))
    assert proxy.forwards() == []
