"""ASGI middleware in front of the route table: the ``/vX.Y`` prefix, OPTIONS, CORS.

Which origins may use the API at all is decided before this, by ``crosssite.CrossSiteGuard``;
this only adds the CORS headers when CORS is on: ``*`` as Docker did, or the request's own
origin when ``api_cors_origins`` lists the allowed ones.

Every route is declared once, unversioned; this middleware strips an optional ``/v<float>``
prefix and records the version in ``scope["moorage.api_version"]`` (a float, compared as
Docker compared it). A version of 0 or above 1.6 gets 404 with an empty body; a prefix that is
not a float (``/v1.6.1/``) means the current version. OPTIONS on any path answers 200.
"""

from __future__ import annotations

import re

from moorage.api import API_VERSION_STR

CURRENT = float(API_VERSION_STR)
_PREFIX = re.compile(r"^/v([0-9.]+)(/.*)?$")
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-headers", b"Origin, X-Requested-With, Content-Type, Accept"),
    (b"access-control-allow-methods", b"GET, POST, DELETE, PUT, OPTIONS"),
]
#: Set in the scope by the handler of unmatched routes: those answers carry no CORS headers.
UNROUTED = "moorage.unrouted"


class VersionAndCorsMiddleware:
    def __init__(self, app, enable_cors: bool = False, cors_origins: list[str] = ()) -> None:
        self.app = app
        self.enable_cors = enable_cors
        self.cors_origins = list(cors_origins)

    def cors_headers(self, scope) -> list[tuple[bytes, bytes]]:
        if not self.cors_origins:
            return CORS_HEADERS
        origin = next((v for k, v in scope.get("headers", []) if k == b"origin"), None)
        if origin is None:
            return CORS_HEADERS[1:]
        return [(b"access-control-allow-origin", origin), (b"vary", b"Origin"), *CORS_HEADERS[1:]]

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket":
            match = _PREFIX.match(scope["path"])
            if match:
                scope["path"] = match.group(2) or "/"
                scope["raw_path"] = scope["path"].encode()
            return await self.app(scope, receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        version = CURRENT
        match = _PREFIX.match(scope["path"])
        if match:
            rest = match.group(2) or "/"
            try:
                version = float(match.group(1))
            except ValueError:
                version = CURRENT
            scope["path"] = rest
            scope["raw_path"] = rest.encode()
        scope["moorage.api_version"] = version

        cors = self.enable_cors

        async def send_with_cors(message):
            if message["type"] == "http.response.start" and cors and not scope.get(UNROUTED):
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + self.cors_headers(scope)
            await send(message)

        if scope["method"] == "OPTIONS":
            return await _empty(send_with_cors, 200)
        if version == 0 or version > CURRENT:
            return await _empty(send_with_cors, 404)
        return await self.app(scope, receive, send_with_cors)


async def _empty(send, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
