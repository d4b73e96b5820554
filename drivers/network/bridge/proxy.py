"""The userland proxy: listens on a published host port and forwards to the container.

DNAT rules do not see connections to 127.0.0.1 (nor, with Docker's rules, traffic coming from
the bridge itself), so, like Docker's ``docker-proxy``, every published port also gets a
forwarder on ``HostIp:HostPort``. Binding it is also what holds the port: a port some other
program uses fails here with ``Conflict`` ("Port already in use: N").

All forwarders of one driver share one asyncio loop on a thread the driver owns. Sockets are
bound synchronously in the caller's thread so that errors reach the caller at once; only the
serving runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import threading
import time
from dataclasses import dataclass

from moorage.core.sdk.errors import Conflict, DriverError

log = logging.getLogger(__name__)

#: idle UDP "connections" are dropped after this long, as Docker's proxy did
UDP_IDLE_SECONDS = 90.0
CONNECT_TIMEOUT = 10.0
CHUNK = 65536


@dataclass(frozen=True)
class Forward:
    proto: str
    host_ip: str
    host_port: int
    target_ip: str
    target_port: int

    def __str__(self) -> str:
        return f"{self.proto} {self.host_ip}:{self.host_port} -> {self.target_ip}:{self.target_port}"


def bind_socket(proto: str, host_ip: str, host_port: int) -> socket.socket:
    """A socket bound to ``host_ip:host_port`` (listening for TCP). EADDRINUSE -> Conflict."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    try:
        if proto == "tcp":
            # lets a restarted daemon take its ports back while old connections linger in
            # TIME_WAIT; for UDP the same option would allow two binders, so it is TCP only
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host_ip or "0.0.0.0", host_port))
        if proto == "tcp":
            sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Conflict(f"Port already in use: {host_port}") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise DriverError(f"cannot publish on {host_ip}:{host_port}: the address is not on this host") from None
        raise DriverError(f"cannot publish on {host_ip}:{host_port}: {exc.strerror}") from None
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


class _TcpForwarder:
    def __init__(self, forward: Forward, sock: socket.socket) -> None:
        self.forward = forward
        self.sock = sock
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, sock=self.sock)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self.tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            target = (self.forward.target_ip, self.forward.target_port)
            up_reader, upstream = await asyncio.wait_for(asyncio.open_connection(*target), CONNECT_TIMEOUT)
            pipes = [asyncio.ensure_future(_pipe(reader, upstream)), asyncio.ensure_future(_pipe(up_reader, writer))]
            try:
                done, pending = await asyncio.wait(pipes, return_when=asyncio.FIRST_EXCEPTION)
                if pending and any(t.exception() for t in done):
                    for t in pending:
                        t.cancel()
            finally:
                for t in pipes:
                    t.cancel()
        except (TimeoutError, OSError) as exc:
            log.debug("proxy %s: %s", self.forward, exc)
        finally:
            for w in (writer, upstream):
                if w is not None:
                    w.close()
            self.tasks.discard(task)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        self.sock.close()


class _UdpForwarder(asyncio.DatagramProtocol):
    """One connected socket towards the container per client address, dropped when idle."""

    def __init__(self, forward: Forward, sock: socket.socket, loop: asyncio.AbstractEventLoop,
                 idle: float) -> None:
        self.forward = forward
        self.sock = sock
        self.loop = loop
        self.idle = idle
        self.transport: asyncio.DatagramTransport | None = None
        self.clients: dict[tuple, tuple[socket.socket, list[float]]] = {}
        self.sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        await self.loop.create_datagram_endpoint(lambda: self, sock=self.sock)
        self.sweeper = self.loop.call_later(self.idle / 3, self._sweep)

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        entry = self.clients.get(addr)
        if entry is None:
            upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            upstream.setblocking(False)
            try:
                upstream.connect((self.forward.target_ip, self.forward.target_port))
            except OSError as exc:
                upstream.close()
                log.debug("proxy %s: %s", self.forward, exc)
                return
            entry = (upstream, [time.monotonic()])
            self.clients[addr] = entry
            self.loop.add_reader(upstream.fileno(), self._reply, addr)
        upstream, seen = entry
        seen[0] = time.monotonic()
        with contextlib.suppress(OSError):
            upstream.send(data)

    def _reply(self, addr: tuple) -> None:
        entry = self.clients.get(addr)
        if entry is None or self.transport is None:
            return
        upstream, seen = entry
        try:
            data = upstream.recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # e.g. ECONNREFUSED from an ICMP error: nothing listens in the container
            return
        seen[0] = time.monotonic()
        self.transport.sendto(data, addr)

    def _drop(self, addr: tuple) -> None:
        upstream, _ = self.clients.pop(addr)
        self.loop.remove_reader(upstream.fileno())
        upstream.close()

    def _sweep(self) -> None:
        limit = time.monotonic() - self.idle
        for addr in [a for a, (_, seen) in self.clients.items() if seen[0] < limit]:
            self._drop(addr)
        self.sweeper = self.loop.call_later(self.idle / 3, self._sweep)

    async def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.cancel()
        for addr in list(self.clients):
            self._drop(addr)
        if self.transport is not None:
            self.transport.close()
        self.sock.close()


class ProxyServer:
    """The forwarders of one driver, served by an asyncio loop on a thread the driver owns."""

    def __init__(self, name: str = "moorage-proxy", udp_idle: float = UDP_IDLE_SECONDS) -> None:
        self._name = name
        self._udp_idle = udp_idle
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._forwarders: dict[Forward, _TcpForwarder | _UdpForwarder] = {}
        self._lock = threading.Lock()

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name=self._name, daemon=True)
                self._thread.start()
            return self._loop

    def _run(self, coro) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result()

    def open(self, forward: Forward) -> None:
        """Start forwarding; Conflict if the host port is taken, DriverError on other failures."""
        sock = bind_socket(forward.proto, forward.host_ip, forward.host_port)
        loop = self._ensure_loop()
        fwd: _TcpForwarder | _UdpForwarder
        if forward.proto == "tcp":
            fwd = _TcpForwarder(forward, sock)
        else:
            fwd = _UdpForwarder(forward, sock, loop, self._udp_idle)
        try:
            self._run(fwd.start())
        except Exception as exc:
            sock.close()
            raise DriverError(f"cannot start the proxy {forward}: {exc}") from exc
        with self._lock:
            self._forwarders[forward] = fwd

    def close(self, forward: Forward) -> None:
        """Stop forwarding and drop its connections; unknown forwards are ignored."""
        with self._lock:
            fwd = self._forwarders.pop(forward, None)
        if fwd is not None:
            self._run(fwd.close())

    def forwards(self) -> list[Forward]:
        with self._lock:
            return list(self._forwarders)

    def udp_clients(self, forward: Forward) -> int:
        """How many client addresses a UDP forward currently tracks (for status and tests)."""
        with self._lock:
            fwd = self._forwarders.get(forward)
        return len(fwd.clients) if isinstance(fwd, _UdpForwarder) else 0

    def stop(self) -> None:
        """Close every forwarder and end the loop thread."""
        for forward in self.forwards():
            try:
                self.close(forward)
            except Exception:
                log.exception("closing proxy %s failed", forward)
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(10)
            loop.close()
