"""Taking over an HTTP connection for attach (see docs/architecture.md, "Attach").

Docker's attach answers ``HTTP/1.1 200 OK`` and then exchanges raw bytes both ways on the same
socket, with no chunked framing, and the client half-closes its side after stdin EOF while it
keeps reading. ASGI cannot express that, so moorage serves HTTP with ``HijackingH11Protocol``,
a subclass of uvicorn's h11 protocol that offers every request a ``moorage.hijack`` scope
extension. A route validates the request first (errors are ordinary HTTP answers) and then
calls it to get a ``RawConnection``: the transport is handed to a plain asyncio protocol, the
bytes h11 had already buffered are fed to it as the first input, and EOF from the client only
ends the input side.

This relies on uvicorn internals (``conn``, ``cycle``, ``transport``), so uvicorn is pinned.

Over TLS the half-close is a TCP one: Docker's clients shut down the write side of the TCP
socket under the TLS session (TLS itself has no half-close), and asyncio's TLS transport would
answer that by closing the connection. ``_keep_tls_writable_after_eof`` makes the hijacked TLS
connection treat it as the end of input only, as the plain transport does.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from asyncio.sslproto import SSLProtocolState

from uvicorn.protocols.http.h11_impl import H11Protocol

HIJACK_EXTENSION = "moorage.hijack"

RAW_STREAM = b"application/vnd.docker.raw-stream"

#: Hijacked connections still open, closed by the server at shutdown.
OPEN_RAW_CONNECTIONS: weakref.WeakSet = weakref.WeakSet()


class RawConnection:
    """The raw byte stream of a hijacked connection."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.reader = asyncio.StreamReader()
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.closed = asyncio.Event()

    async def send_status(self, upgrade: bool = False) -> None:
        """Write the status line and headers: 200 as Docker 0.6 did, or 101 when the client
        asked for ``Upgrade: tcp`` (as clients after 2014 do)."""
        if upgrade:
            head = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: " + RAW_STREAM +
                    b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Type: " + RAW_STREAM + b"\r\n\r\n"
        await self.write(head)

    async def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        self.transport.write(data)
        await self._can_write.wait()

    async def read(self, n: int = 65536) -> bytes:
        """Up to ``n`` bytes from the client; b"" once it half-closed or went away."""
        return await self.reader.read(n)

    def close(self) -> None:
        """Half-close our side (so the client reads EOF), then close the socket."""
        if not self.transport.is_closing():
            if self.transport.can_write_eof():
                try:
                    self.transport.write_eof()
                except OSError:
                    pass
            self.transport.close()


class _RawProtocol(asyncio.Protocol):
    def __init__(self, connection: RawConnection) -> None:
        self.connection = connection
        self.tls = False

    def data_received(self, data: bytes) -> None:
        self.connection.reader.feed_data(data)

    def eof_received(self) -> bool:
        self.connection.reader.feed_eof()
        # keep a plain transport open: output still flows after the client's half-close (a TLS
        # one ignores the answer: _keep_tls_writable_after_eof keeps it open)
        return not self.tls

    def connection_lost(self, exc: Exception | None) -> None:
        self.connection.reader.feed_eof()
        self.connection._can_write.set()
        self.connection.closed.set()

    def pause_writing(self) -> None:
        self.connection._can_write.clear()

    def resume_writing(self) -> None:
        self.connection._can_write.set()


class HijackingH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, plus the ``moorage.hijack`` extension in every HTTP scope."""

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        cycle = self.cycle
        if cycle is not None and cycle is not before and cycle.scope is self.scope:
            extensions = self.scope.setdefault("extensions", {})
            extensions[HIJACK_EXTENSION] = functools.partial(self._hijack, cycle)

    def _hijack(self, cycle) -> RawConnection:
        if cycle.response_started:
            raise RuntimeError("cannot hijack a connection after the response started")
        # FastAPI's own answer after the hijack is dropped, and uvicorn must not start a next
        # request cycle on this connection.
        cycle.disconnected = True
        cycle.on_response = lambda: None
        self.connections.discard(self)
        self._unset_keepalive_if_required()
        connection = RawConnection(self.transport)
        protocol = _RawProtocol(connection)
        pending, closed = self.conn.trailing_data
        self.transport.set_protocol(protocol)
        protocol.tls = _keep_tls_writable_after_eof(self.transport)
        if pending:
            protocol.data_received(bytes(pending))
        if closed:
            protocol.eof_received()
        self.transport.resume_reading()
        OPEN_RAW_CONNECTIONS.add(connection)
        return connection


def _keep_tls_writable_after_eof(transport: asyncio.Transport) -> bool:
    """On a TLS transport (asyncio's ``SSLProtocol`` underneath), make the client's half-close
    end only the input, as on a plain socket: the client still reads the output. Today's
    docker CLI half-closes with a TLS close_notify (Go's ``tls.Conn.CloseWrite``), older
    clients by shutting down the TCP write side under the session; asyncio would answer either
    by closing the connection. Our own close still ends the session normally.
    Returns whether ``transport`` is a TLS one."""
    ssl_protocol = getattr(transport, "_ssl_protocol", None)
    if ssl_protocol is None:
        return False
    shut_down, tcp_eof_closes = ssl_protocol._start_shutdown, ssl_protocol.eof_received

    def start_shutdown() -> None:
        if transport.is_closing():  # we closed: the normal TLS shutdown
            shut_down()
        # else it is the client's close_notify: asyncio told the protocol already; output goes on

    def eof_received() -> bool:
        if transport.is_closing() or ssl_protocol._state != SSLProtocolState.WRAPPED:
            return tcp_eof_closes()
        # no close_notify exchange follows at our close: the client cannot answer one after its
        # TCP half-close; our FIN ends the stream, which Go's TLS reads as a clean EOF
        ssl_protocol._eof_received = True
        ssl_protocol._app_protocol.eof_received()
        return True

    ssl_protocol._start_shutdown = start_shutdown
    ssl_protocol.eof_received = eof_received
    return True


def hijack(scope) -> RawConnection:
    """Take over the connection of the request in ``scope`` (a route handler calls this)."""
    try:
        take_over = scope["extensions"][HIJACK_EXTENSION]
    except KeyError:
        raise RuntimeError("this server cannot hijack connections (not served by moorage's protocol)") from None
    return take_over()


def wants_upgrade(headers) -> bool:
    """Whether the request asked for ``Connection: Upgrade`` / ``Upgrade: tcp``."""
    values = {k.lower(): v.lower() for k, v in headers.items()}
    return "upgrade" in values.get("connection", "") and values.get("upgrade", "") == "tcp"
