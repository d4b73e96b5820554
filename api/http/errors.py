"""The one place typed errors become HTTP answers: a plain-text body (message + newline)."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from moorage.api.http.versioning import UNROUTED
from moorage.core.sdk import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.MoorageError], int] = {
    errors.NotFound: 404,
    errors.InvalidParameter: 400,
    errors.Conflict: 409,
    errors.Impossible: 406,
    errors.StateError: 500,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotSupported: 500,
    errors.Unavailable: 500,
    errors.ConfigError: 500,
    errors.DriverError: 500,
    errors.JobFailed: 500,
    errors.StorageFull: 507,
}


def status_for(exc: errors.MoorageError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def plain(message: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(message.rstrip("\n") + "\n", status_code=status,
                             media_type="text/plain; charset=utf-8")


async def moorage_error_handler(request: Request, exc: errors.MoorageError) -> PlainTextResponse:
    return plain(exc.message, status_for(exc))


async def validation_error_handler(request: Request, exc: RequestValidationError) -> PlainTextResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return plain(f"Bad parameter: {where}: {first.get('msg', 'invalid request')}", 400)


async def not_found_handler(request: Request, exc: StarletteHTTPException) -> PlainTextResponse:
    # a 404 as gorilla/mux answered unknown paths and wrong methods, but saying which endpoint is
    # not served (and which methods a known path takes), since today's CLI prints the message
    if exc.status_code in (404, 405):
        request.scope[UNROUTED] = True
        return plain(unserved_message(request), 404)
    return plain(str(exc.detail), exc.status_code)


def unserved_message(request: Request) -> str:
    from starlette.routing import Match

    path, method = request.scope["path"], request.method
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, child = route.matches({**request.scope, "method": "GET", "type": "http"})
        if match == Match.NONE or not getattr(route, "methods", None):
            continue
        # a greedy ``{name:path}`` at the end swallows any suffix: only a plain name counts
        greedy = route.path.endswith(":path}") and "/" in str(list(child.get("path_params", {}).values())[-1:])
        if not greedy:
            methods |= route.methods
    methods.discard("HEAD") if "GET" in methods else None
    if methods:
        return f"404 page not found: {path} is served for {', '.join(sorted(methods))}, not {method}"
    return f"404 page not found: moorage does not serve {method} {path}"


async def storage_error_handler(request: Request, exc: Exception) -> PlainTextResponse:
    """A full disk is no bug of the daemon's: a ``StorageFull`` answer and one log line. Any
    other ``OSError`` or SQLite error is an internal error."""
    full = errors.storage_full(exc)
    if full is None:
        return await unexpected_error_handler(request, exc)
    log.warning("%s %s: %s (%s)", request.method, request.url.path, full.message, exc)
    return plain(full.message, status_for(full))


async def unexpected_error_handler(request: Request, exc: Exception) -> PlainTextResponse:
    log.exception("internal error on %s %s", request.method, request.url.path)
    return plain(f"{type(exc).__name__}: {exc}", 500)


def install(app) -> None:
    app.add_exception_handler(errors.MoorageError, moorage_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, not_found_handler)
    # a handler of its own, not a case of the catch-all: Starlette re-raises what reaches that
    # one after answering, and the server then logs a traceback
    for storage_error in errors.STORAGE_ERRORS:
        app.add_exception_handler(storage_error, storage_error_handler)
    app.add_exception_handler(Exception, unexpected_error_handler)
