"""The FastAPI application: the route table and the feature plugins' routes, the error mapping,
the version/CORS middleware."""

from __future__ import annotations

from fastapi import FastAPI

from moorage.api.http import errors
from moorage.api.http.crosssite import CrossSiteGuard
from moorage.api.http.routes import ROUTES, Route
from moorage.api.http.versioning import VersionAndCorsMiddleware
from moorage.core.kernel.kernel import Kernel
from moorage.core.sdk.errors import PluginError


def create_app(kernel: Kernel, routes: list[Route] | None = None, enable_cors: bool | None = None):
    """The ASGI app for ``kernel``: FastAPI wrapped in the version/CORS middleware, behind the
    cross-site guard. ``routes`` replaces the core route table (tests); the kernel's feature
    plugins add theirs."""
    app = FastAPI(title="moorage", version=kernel.version, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.kernel = kernel
    table = list(ROUTES if routes is None else routes)
    taken = {(r.method, r.path) for r in table}
    for feature in kernel.features:
        for contributed in feature.routes():
            if (contributed.method, contributed.path) in taken:
                raise PluginError(f"feature plugin {feature.name!r} contributes {contributed.method} "
                                  f"{contributed.path}, which is already served")
            taken.add((contributed.method, contributed.path))
            table.append(Route(contributed.method, contributed.path, contributed.endpoint))
    for route in table:
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
