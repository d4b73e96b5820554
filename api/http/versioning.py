"""ASGI middleware in front of the route table: the ``/vX.Y`` prefix, OPTIONS, CORS.

Which origins may use the API at all is decided before this, by ``crosssite.CrossSiteGuard``;
this only adds the CORS headers when CORS is on: ``*`` as Docker did, or the request's own
origin when ``api_cors_origins`` lists the allowed ones.

Every route is declared once, unversioned; this middleware strips an optional ``/vX.Y`` prefix
and records the request's ``Version`` in ``scope["moorage.api_version"]``. The rule
(docs/api.md, "Versions"):

- ``/v1.0`` to ``/v1.6`` (and ``/v1``): Docker 0.6.5's shapes, exactly;
- ``/v1.24`` to ``/v1.47``: today's shapes (``Version.modern``);
- no prefix, or one that is not a version (``/v1.6.1/``): 1.6, so that 2013's clients, which
  send some paths unversioned, keep working (today's clients version every path but
  ``/_ping`` and ``/version``, which answer the same for every version);
- ``/v0`` and ``/v0.0``: 404 with an empty body, as Docker 0.6.5 answered;
- above 1.47: 400 ``client version X is too new. Maximum supported API version is 1.47``;
- 1.7 to 1.23: 400 naming the versions served (moorage has no shape of those versions).

OPTIONS on any path answers 200.
"""

from __future__ import annotations

import operator
import re
from typing import NamedTuple

from moorage.api import API_VERSION, MODERN_MAX, MODERN_MIN

_PREFIX = re.compile(r"^/v([0-9.]+)(/.*)?$")
_NUMBER = re.compile(r"^([0-9]+)(?:\.([0-9]+))?$")
CORS_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-headers", b"Origin, X-Requested-With, Content-Type, Accept"),
    (b"access-control-allow-methods", b"GET, POST, DELETE, PUT, OPTIONS"),
]
#: Set in the scope by the handler of unmatched routes: those answers carry no CORS headers.
UNROUTED = "moorage.unrouted"


class Version(NamedTuple):
    """An API version, ``major.minor`` compared as integers (1.10 is above 1.9, as today's
    Docker compares them). Comparing with a float (``version < 1.3``) reads the float as
    ``major.minor`` (for handlers written when versions were floats)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> Version | None:
        match = _NUMBER.match(text)
        if match is None:
            return None
        return cls(int(match.group(1)), int(match.group(2) or 0))

    @classmethod
    def of(cls, other: object) -> Version:
        if isinstance(other, Version):
            return other
        if isinstance(other, tuple):
            return cls(*other)
        if isinstance(other, float | int):
            parsed = cls.parse(repr(float(other)))
            if parsed is not None:
                return parsed
        raise TypeError(f"not an API version: {other!r}")

    def __eq__(self, other: object) -> bool:
        return self._compare(other, operator.eq)

    def __ne__(self, other: object) -> bool:
        result = self._compare(other, operator.eq)
        return result if result is NotImplemented else not result

    def _compare(self, other: object, op) -> bool:
        try:
            return op(tuple(self), tuple(Version.of(other)))
        except TypeError:
            return NotImplemented

    def __lt__(self, other: object) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: object) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: object) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: object) -> bool:
        return self._compare(other, operator.ge)

    def __hash__(self) -> int:
        return tuple.__hash__(self)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def modern(self) -> bool:
        """Today's shapes (1.24 and above) rather than Docker 0.6.5's."""
        return self >= MODERN


LEGACY = Version(*API_VERSION)
MODERN = Version(*MODERN_MIN)
NEWEST = Version(*MODERN_MAX)


class Refusal(NamedTuple):
    status: int
    body: bytes


def resolve(prefix: str | None) -> Version | Refusal:
    """The version a path's prefix asks for (None: no prefix), or how it is refused."""
    if prefix is None:
        return LEGACY
    version = Version.parse(prefix)
    if version is None:
        return LEGACY  # /v1.6.1/: not a version, as Docker 0.6.5 read it
    if version == (0, 0):
        return Refusal(404, b"")
    if version > NEWEST:
        return Refusal(400, f"client version {prefix} is too new. Maximum supported API version is "
                            f"{NEWEST}\n".encode())
    if LEGACY < version < MODERN:
        return Refusal(400, f"client version {prefix} is not supported: moorage serves API versions "
                            f"1.0 to {LEGACY} and {MODERN} to {NEWEST}\n".encode())
    return version


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
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        match = _PREFIX.match(scope["path"])
        version = resolve(match.group(1) if match else None)
        if match:
            scope["path"] = match.group(2) or "/"
            scope["raw_path"] = scope["path"].encode()
        if scope["type"] == "websocket":
            scope["moorage.api_version"] = version if isinstance(version, Version) else LEGACY
            return await self.app(scope, receive, send)
        scope["moorage.api_version"] = version

        cors = self.enable_cors

        async def send_with_cors(message):
            if message["type"] == "http.response.start" and cors and not scope.get(UNROUTED):
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + self.cors_headers(scope)
            await send(message)

        if scope["method"] == "OPTIONS":
            return await _answer(send_with_cors, 200)
        if isinstance(version, Refusal):
            return await _answer(send_with_cors, version.status, version.body)
        return await self.app(scope, receive, send_with_cors)


async def _answer(send, status: int, body: bytes = b"") -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if body:
        headers.append((b"content-type", b"text/plain; charset=utf-8"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
