"""The FastAPI application: the route table, the error mapping, the version/CORS middleware."""

from __future__ import annotations

from fastapi import FastAPI

from ..core.kernel import Kernel
from . import errors
from .crosssite import CrossSiteGuard
from .routes import ROUTES, Route
from .versioning import VersionAndCorsMiddleware


def create_app(kernel: Kernel, routes: list[Route] | None = None, enable_cors: bool | None = None):
    """The ASGI app for ``kernel``: FastAPI wrapped in the version/CORS middleware, behind the
    cross-site guard."""
    app = FastAPI(title="moorage", version=kernel.version, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.kernel = kernel
    for route in ROUTES if routes is None else routes:
        if route.method == "WEBSOCKET":
            app.add_api_websocket_route(route.path, route.handler, name=route.handler.__name__)
        else:
            app.add_api_route(route.path, route.handler, methods=[route.method], name=route.handler.__name__,
                              include_in_schema=False)
    errors.install(app)
    daemon = kernel.config.daemon
    cors = daemon.api_enable_cors if enable_cors is None else enable_cors
    return CrossSiteGuard(VersionAndCorsMiddleware(app, enable_cors=cors, cors_origins=daemon.api_cors_origins),
                          cors=cors, cors_origins=daemon.api_cors_origins, hostnames=daemon.api_hostnames)
