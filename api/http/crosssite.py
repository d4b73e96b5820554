"""No cross-site use of the API (docs/security.md, "The API: TLS and cross-site requests").

A web page cannot read the daemon's answers across origins, but it can make the browser send
"simple" requests (a POST with a ``text/plain`` body needs no preflight), and with DNS
rebinding its own name can come to point at 127.0.0.1 and make the daemon same-origin. Every
such request carries what no docker client sends, so ``CrossSiteGuard`` refuses:

- a request (or websocket) with an ``Origin`` header, unless CORS is on and allows that origin
  (browsers send ``Origin`` on every cross-origin request, every POST and every websocket);
- on TCP, a request whose ``Host`` is not an IP literal, ``localhost`` or a name the config
  lists: a rebound name is none of these. Unix sockets are out of a browser's reach.

And handlers that parse a JSON body call ``refuse_non_json`` first: a JSON body must say
``application/json`` or carry no Content-Type (what docker-py 0.2.3 and the docker CLI send).
"""

from __future__ import annotations

import ipaddress

from starlette.requests import Request

from moorage.core.sdk.errors import InvalidParameter

JSON_MEDIA_TYPE = "application/json"


def origin_allowed(origin: str, cors: bool, origins: list[str]) -> bool:
    """Whether a browser request from ``origin`` may use the API: only with CORS on, and then
    any origin when no list is configured (Docker's ``Access-Control-Allow-Origin: *``)."""
    if not cors:
        return False
    return not origins or origin.rstrip("/").lower() in {o.rstrip("/").lower() for o in origins}


def host_name(host: str) -> str:
    """The name or address part of a ``Host`` header value (``[::1]:80`` -> ``::1``)."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host, _, port = host.partition(":")
    return host.rstrip(".")


def host_allowed(host: str, hostnames: list[str]) -> bool:
    name = host_name(host)
    if name == "localhost" or name in {n.lower().rstrip(".") for n in hostnames}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_tcp(scope) -> bool:
    """uvicorn gives a unix socket's connection ``server = (path, None)``."""
    server = scope.get("server")
    return server is not None and server[1] is not None


class CrossSiteGuard:
    """ASGI middleware in front of everything: answers 403 to cross-site requests."""

    def __init__(self, app, cors: bool = False, cors_origins: list[str] = (), hostnames: list[str] = ()) -> None:
        self.app = app
        self.cors = cors
        self.cors_origins = list(cors_origins)
        self.hostnames = list(hostnames)

    def refusal(self, scope) -> str | None:
        """Why the request in ``scope`` is refused, or None."""
        origins = [v for k, v in scope.get("headers", []) if k == b"origin"]
        hosts = [v for k, v in scope.get("headers", []) if k == b"host"]
        if len(origins) > 1 or len(hosts) > 1:
            return "more than one Origin or Host header"
        if origins:
            origin = origins[0].decode("latin-1")
            if not origin_allowed(origin, self.cors, self.cors_origins):
                why = "CORS is off" if not self.cors else "that origin is not in api_cors_origins"
                return f"cross-site request from origin {origin!r} refused ({why})"
        if hosts and is_tcp(scope):
            host = hosts[0].decode("latin-1")
            if not host_allowed(host, self.hostnames):
                return (f"Host {host!r} refused: on TCP the Host must be an IP address, localhost or a name "
                        "listed in api_hostnames (this stops DNS rebinding)")
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        reason = self.refusal(scope)
        if reason is None:
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            # closing before accepting: uvicorn answers the handshake with 403
            return await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        body = (reason + "\n").encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def refuse_non_json(request: Request, body: bytes) -> None:
    """A handler about to parse ``body`` as JSON calls this: a body under any Content-Type
    other than ``application/json`` (parameters allowed) is refused, so that a browser's
    ``text/plain`` form cannot pass for an API call. An empty body is no JSON and passes (the
    0.6 docker CLI labels its empty POSTs ``plain/text``)."""
    content_type = request.headers.get("content-type")
    if content_type is None or not body.strip():
        return
    if content_type.split(";")[0].strip().lower() != JSON_MEDIA_TYPE:
        raise InvalidParameter(f"Bad parameter: a JSON body must be sent as {JSON_MEDIA_TYPE}, "
                               f"not {content_type!r}")
