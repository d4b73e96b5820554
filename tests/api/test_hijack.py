"""The serving layer can take over a connection: a route writes a raw ``HTTP/1.1 200 OK``
stream and keeps reading the same socket after the client half-closes (what attach needs)."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from moorage.api.http.hijack import hijack, wants_upgrade
from moorage.api.http.server import bind, make_server, parse_host


def echo_app() -> FastAPI:
    app = FastAPI()

    @app.post("/echo/{name}")
    async def echo(name: str, request: Request):
        if name == "missing":
            return Response("No such container: missing\n", status_code=404, media_type="text/plain")
        raw = hijack(request.scope)
        await raw.send_status(upgrade=wants_upgrade(request.headers))
        await raw.write(b"hello " + name.encode() + b"\n")
        received = b""
        while chunk := await raw.read():
            received += chunk
        # the client has half-closed; we can still write
        await raw.write(b"got " + str(len(received)).encode() + b" bytes: " + received.upper())
        raw.close()
        return Response()

    @app.get("/plain")
    async def plain():
        return {"ok": True}

    return app


@pytest.fixture(params=["unix", "tcp"])
def served(request, tmp_path):
    spec = f"unix://{tmp_path}/hijack.sock" if request.param == "unix" else "tcp://127.0.0.1:0"
    sock = bind(parse_host(spec))
    address = sock.getsockname()
    server = make_server(echo_app())
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    yield (socket.AF_UNIX if request.param == "unix" else socket.AF_INET), address
    server.should_exit = True
    thread.join(10)
    sock.close()
    loop.close()


def _connect(served) -> socket.socket:
    family, address = served
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(address)
    return s


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def _read_response(s: socket.socket) -> bytes:
    """One response with a Content-Length, read off a kept-alive connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def test_raw_stream_and_read_after_half_close(served):
    s = _connect(served)
    # the 0.6 client: no body, Content-Type plain/text, no Upgrade header; stdin right behind the request
    s.sendall(b"POST /echo/web HTTP/1.1\r\nHost: x\r\nContent-Type: plain/text\r\nContent-Length: 0\r\n\r\nabc")
    s.sendall(b"def")
    s.shutdown(socket.SHUT_WR)
    data = _read_all(s)
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream"
    assert body == b"hello web\ngot 6 bytes: ABCDEF"  # no chunked framing, input seen after half-close


def test_upgrade_tcp_gets_101(served):
    s = _connect(served)
    s.sendall(b"POST /echo/x HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
              b"Content-Length: 0\r\n\r\n")
    s.sendall(b"zz")
    s.shutdown(socket.SHUT_WR)
    data = _read_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
    assert b"Upgrade: tcp\r\n" in data
    assert data.endswith(b"hello x\ngot 2 bytes: ZZ")


def test_error_before_hijack_is_plain_http_and_connection_stays_usable(served):
    s = _connect(served)
    s.sendall(b"POST /echo/missing HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    first = _read_response(s)
    assert first.startswith(b"HTTP/1.1 404 ")
    assert first.endswith(b"No such container: missing\n")
    s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
    second = _read_response(s)
    assert second.startswith(b"HTTP/1.1 200 ") and second.endswith(b'{"ok":true}')
    s.close()
