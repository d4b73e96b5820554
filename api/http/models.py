"""The request bodies and query parameters of the v1.6 routes, as an OpenAPI schema.

The handlers read their query parameters and bodies themselves, with Go's rules (a body key
matched case-insensitively, an unparsable ``limit`` taken as -1...), so FastAPI sees none of
them. These models describe what clients send, for the schema only: ``openapi_schema()``
builds the schema of the route table with them, and the API fuzzer (bench/fuzz_api.py)
generates its requests from it. Nothing here validates a request. The container's ``Config``
and ``HostConfig`` are the container model's own (``core/services/container_model.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from moorage.core.services.container_model import ContainerConfig, HostConfig


class CopyRequest(BaseModel):
    """``POST /containers/{name}/copy``'s body."""

    Resource: str


class AuthBody(BaseModel):
    """``POST /auth``'s body, and ``push``'s when there is no ``X-Registry-Auth``."""

    model_config = ConfigDict(extra="allow")
    username: str = ""
    password: str = ""
    email: str = ""
    serveraddress: str = ""


def _query(name: str, kind: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind}}


def _body(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _inlined(model.model_json_schema())}}}


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with its ``$defs`` references replaced by what they name: the operation's
    schema stands alone in the OpenAPI document, where ``#/$defs/...`` would resolve nowhere."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def _tar_body() -> dict[str, Any]:
    binary = {"type": "string", "format": "binary"}
    return {"required": False, "content": {"application/octet-stream": {"schema": binary}}}


_BOOL = "string"  # Go's ParseBool forms ("1", "t", "true"...): the fuzzer should try any string

#: (method, path) -> the OpenAPI operation fields the handler's signature cannot show.
ROUTE_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/images/create"): {"parameters": [_query("fromImage"), _query("fromSrc"), _query("repo"),
                                                _query("tag"), _query("registry")], "requestBody": _tar_body()},
    ("GET", "/images/json"): {"parameters": [_query("all", _BOOL), _query("filter")]},
    ("GET", "/images/viz"): {},
    ("GET", "/images/search"): {"parameters": [_query("term")]},
    ("POST", "/images/{name:path}/push"): {"parameters": [_query("tag"), _query("registry")],
                                           "requestBody": _body(AuthBody, required=False)},
    ("POST", "/auth"): {"requestBody": _body(AuthBody)},
    ("POST", "/images/{name:path}/tag"): {"parameters": [_query("repo"), _query("tag"), _query("force", _BOOL)]},
    ("POST", "/images/{name:path}/insert"): {"parameters": [_query("path"), _query("url")]},
    ("POST", "/containers/create"): {"parameters": [_query("name")], "requestBody": _body(ContainerConfig)},
    ("GET", "/containers/json"): {"parameters": [_query("all", _BOOL), _query("limit"), _query("since"),
                                                 _query("before"), _query("size", _BOOL)]},
    ("GET", "/containers/ps"): {"parameters": [_query("all", _BOOL), _query("limit")]},
    ("GET", "/containers/{name:path}/top"): {"parameters": [_query("ps_args")]},
    ("POST", "/containers/{name:path}/start"): {"requestBody": _body(HostConfig, required=False)},
    ("POST", "/containers/{name:path}/stop"): {"parameters": [_query("t")]},
    ("POST", "/containers/{name:path}/restart"): {"parameters": [_query("t")]},
    ("POST", "/containers/{name:path}/kill"): {"parameters": [_query("signal")]},
    ("POST", "/containers/{name:path}/resize"): {"parameters": [_query("h"), _query("w")]},
    ("POST", "/containers/{name:path}/copy"): {"requestBody": _body(CopyRequest)},
    ("DELETE", "/containers/{name:path}"): {"parameters": [_query("v", _BOOL), _query("link", _BOOL)]},
    ("POST", "/commit"): {"parameters": [_query("container"), _query("repo"), _query("tag"), _query("m"),
                                         _query("author")], "requestBody": _body(ContainerConfig, required=False)},
    ("POST", "/build"): {"parameters": [_query("t"), _query("q", _BOOL), _query("nocache", _BOOL),
                                        _query("rm", _BOOL), _query("remote")], "requestBody": _tar_body()},
}

#: Routes that feature plugins contribute (``api/http/app.py`` serves them beside the route table):
#: described here all the same, so that the fuzzer reaches them on a daemon that loads them.
FEATURE_ROUTES = {("POST", "/build")}


async def _feature_endpoint() -> None:
    """Stands for a feature plugin's handler in the schema; never served."""


#: Routes left out of the schema: they hold the connection open for as long as the client
#: or a container wants (a fuzzer would only wait on them).
STREAMING = {("GET", "/events"), ("POST", "/containers/{name:path}/attach")}


def openapi_schema(routes=None) -> dict[str, Any]:
    """The OpenAPI schema of the route table's v1.6 HTTP routes (unversioned paths; the same
    answer under ``/v1.6``), with the bodies and query parameters above."""
    from moorage.api.http.routes import ROUTES

    app = FastAPI(title="moorage Docker Remote API", version="1.6", openapi_url=None, docs_url=None, redoc_url=None)
    for route in ROUTES if routes is None else routes:
        key = (route.method, route.path)
        if route.method in ("WEBSOCKET", "HEAD") or key in STREAMING:
            continue
        app.add_api_route(route.path, route.handler, methods=[route.method], name=route.handler.__name__,
                          openapi_extra=ROUTE_SCHEMAS.get(key))
    for method, path in sorted(FEATURE_ROUTES):
        app.add_api_route(path, _feature_endpoint, methods=[method], name=path.strip("/"),
                          openapi_extra=ROUTE_SCHEMAS.get((method, path)))
    return app.openapi()
