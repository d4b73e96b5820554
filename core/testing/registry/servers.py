"""Servers for registry client tests and benchmarks, all on 127.0.0.1: Debian's
``docker-registry`` (distribution 2.8) with filesystem storage in a temp dir (plain, htpasswd or
token auth), a token server issuing RS256 JWTs, and a proxy that fails on purpose."""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

SERVICE = "moorage-test-registry"
ISSUER = "moorage-test-issuer"
USER, PASSWORD = "alice", "s3cret-pw"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the registry server --------------------------------------------------------------------
class RegistryServer:
    """``docker-registry serve`` on a free loopback port with storage in ``base``."""

    def __init__(self, base: Path, auth_yaml: str = "") -> None:
        self.base = base
        self.port = free_port()
        self.storage = base / "storage"
        self.storage.mkdir(parents=True)
        self.config = base / "config.yml"
        self.config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self.storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n  secret: {uuid.uuid4().hex}\n" + auth_yaml)
        self.log = open(base / "registry.log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        self._wait()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"registry exited: {(self.base / 'registry.log').read_text()}")
            try:
                httpx.get(f"{self.url}/v2/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("registry did not start")

    def blob_path(self, digest: str) -> Path:
        hexpart = digest.split(":", 1)[1]
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


# -- the token server -----------------------------------------------------------------------
class TokenServer:
    """Issues RS256 JWTs the registry trusts: full requested access for ``alice``, pull only for
    anonymous requests, 401 for wrong credentials. Records every request's scopes."""

    def __init__(self, base: Path) -> None:
        self.key, self.cert = base / "token.key", base / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-subj", "/CN=moorage-test-token", "-days", "2"],
                       check=True, capture_output=True)
        pub = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-pubkey", "-noout"], check=True,
                             capture_output=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub, check=True,
                             capture_output=True).stdout
        # libtrust key id: base32 of the first 240 bits of the SPKI's sha256, in groups of four
        encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode()
        self.kid = ":".join(encoded[i:i + 4] for i in range(0, len(encoded), 4))
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{b64url(signature)}"

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlsplit(request.path).query)
        user = None
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (name, password) != (USER, PASSWORD):
                request.send_response(401)
                request.send_header("Content-Length", "0")
                request.end_headers()
                return
            user = name
        scopes = query.get("scope", [])
        with self._lock:
            self.requests.append({"user": user, "scopes": scopes})
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = [a for a in actions.split(",") if user or a == "pull"]
            if kind == "registry" and not user:
                granted = []
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        token = self.sign({"iss": ISSUER, "sub": user or "", "aud": query.get("service", [""])[0], "exp": now + 600,
                           "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access})
        body = json.dumps({"token": token, "access_token": token, "expires_in": 600}).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# -- a flaky proxy --------------------------------------------------------------------------
class FlakyProxy:
    """Forwards to ``upstream``; ``policy(method, path, hits)`` may answer ``"503"`` or ``"drop"``
    (half the body, then the connection closes) instead, or a ``dict`` to send as a JSON answer
    of its own (an endpoint the registry lacks). ``hits`` counts earlier requests with the same
    method and path (upload session ids collapsed)."""

    def __init__(self, upstream: str, policy) -> None:
        self.upstream = upstream
        self.policy = policy
        self.hits: dict[tuple[str, str], int] = {}
        self.failures: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                proxy.forward(self)

            do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def forward(self, request: http.server.BaseHTTPRequestHandler) -> None:
        path = urlsplit(request.path).path
        key_path = path.split("/blobs/uploads/")[0] + ("/blobs/uploads/" if "/blobs/uploads/" in path else "")
        key = (request.command, key_path)
        with self._lock:
            hits = self.hits.get(key, 0)
            self.hits[key] = hits + 1
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else None
        action = self.policy(request.command, path, hits)
        if isinstance(action, dict):
            data = json.dumps(action).encode()
            request.send_response(200)
            request.send_header("Content-Type", "application/json")
            request.send_header("Content-Length", str(len(data)))
            request.send_header("Connection", "close")
            request.end_headers()
            request.wfile.write(data)
            return
        if action == "503":
            self.failures.append((request.command, path, action))
            request.send_response(503)
            request.send_header("Content-Length", "0")
            request.send_header("Connection", "close")
            request.end_headers()
            return
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("connection", "keep-alive")}
        conn.request(request.command, request.path, body=body, headers=headers)
        upstream = conn.getresponse()
        data = upstream.read()
        conn.close()
        if action == "drop" and len(data) > 1:
            self.failures.append((request.command, path, action))
            request.send_response(upstream.status)
            request.send_header("Content-Length", str(len(data)))
            request.end_headers()
            request.wfile.write(data[: len(data) // 2])
            request.wfile.flush()
            request.close_connection = True
            return
        request.send_response(upstream.status)
        for name, value in upstream.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                request.send_header(name, value)
        request.send_header("Content-Length", upstream.getheader("Content-Length") or str(len(data)))
        request.send_header("Connection", "close")
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)
        request.close_connection = True

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()




# -- a scripted server, for hostile registries -------------------------------------------------
class Answer:
    """What a ``ScriptedServer`` sends: a status, headers, and a body (bytes, or an iterable of
    chunks written until the client goes away; ``length`` None sends no Content-Length and
    closes the connection after the body)."""

    def __init__(self, status: int = 200, headers: dict[str, str] | None = None, body=b"",
                 length: int | None = -1) -> None:
        self.status, self.headers, self.body = status, dict(headers or {}), body
        self.length = len(body) if length == -1 and isinstance(body, bytes) else length


class ScriptedServer:
    """An HTTP server on ``address`` (any loopback address, 127.0.0.2 included: another host
    for the client) answering each request with ``script(method, path, headers)`` -> ``Answer``
    (404 when it returns None). Records every request as ``(method, path, headers)``, and how
    many body bytes it managed to send per path."""

    def __init__(self, script, address: str = "127.0.0.1") -> None:
        self.script = script
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.sent: dict[str, int] = {}
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

            do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = do_GET

        self.httpd = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.httpd.daemon_threads = True
        self.address, self.port = address, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def handle(self, request: http.server.BaseHTTPRequestHandler) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        length = int(headers.get("content-length") or 0)
        if length:
            request.rfile.read(length)
        with self._lock:
            self.requests.append((request.command, request.path, headers))
        answer = self.script(request.command, request.path, headers) or Answer(404, body=b'{"errors":[]}')
        request.send_response(answer.status)
        for name, value in answer.headers.items():
            request.send_header(name, value)
        if answer.length is not None:
            request.send_header("Content-Length", str(answer.length))
        else:
            request.send_header("Connection", "close")
            request.close_connection = True
        request.end_headers()
        if request.command == "HEAD":
            return
        chunks = [answer.body] if isinstance(answer.body, bytes) else answer.body
        sent = 0
        try:
            for chunk in chunks:
                request.wfile.write(chunk)
                sent += len(chunk)
        except OSError:  # the client stopped reading: what it should do with a hostile answer
            request.close_connection = True
        finally:
            with self._lock:
                self.sent[request.path] = self.sent.get(request.path, 0) + sent

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
