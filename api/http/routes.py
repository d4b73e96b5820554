"""The route table: the single place endpoints are declared.

Each row is (method, path, handler); the method ``WEBSOCKET`` declares a websocket endpoint.
Paths are unversioned; ``versioning`` serves them under ``/vX.Y`` too. ``{name:path}`` is
greedy, so names with ``/`` work (``/images/user/repo/push``).
An endpoint is declared here only once it works. Feature plugins add their own endpoints
(``POST /build`` is the builder's): ``api/http/app.py`` serves them beside these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from moorage.api.http import (
    archive,
    attach,
    containers,
    containers_modern,
    exec_instances,
    images,
    logs,
    registry,
    stats,
    system,
    volumes,
)


class Route(NamedTuple):
    method: str
    path: str
    handler: Callable


ROUTES: list[Route] = [
    Route("GET", "/_ping", system.ping),
    Route("HEAD", "/_ping", system.ping),
    Route("GET", "/version", system.version),
    Route("GET", "/info", system.info),
    Route("GET", "/events", system.events),
    Route("POST", "/images/create", images.create),
    Route("GET", "/images/json", images.list_images),
    Route("GET", "/images/viz", images.viz),
    Route("GET", "/images/search", registry.search),
    Route("POST", "/images/{name:path}/push", registry.push),
    Route("POST", "/auth", registry.auth),
    Route("GET", "/images/{name:path}/json", images.inspect),
    Route("GET", "/images/{name:path}/history", images.history),
    Route("POST", "/images/{name:path}/tag", images.tag),
    Route("POST", "/images/{name:path}/insert", images.insert),
    Route("DELETE", "/images/{name:path}", images.delete),
    Route("POST", "/containers/create", containers.create),
    Route("GET", "/containers/json", containers.list_containers),
    Route("POST", "/containers/prune", containers_modern.prune),
    Route("GET", "/containers/ps", containers.list_containers),
    Route("GET", "/containers/{name:path}/json", containers.inspect),
    Route("GET", "/containers/{name:path}/changes", containers.changes),
    Route("GET", "/containers/{name:path}/export", containers.export),
    Route("GET", "/containers/{name:path}/top", containers.top),
    Route("GET", "/containers/{name:path}/logs", logs.logs),
    Route("POST", "/containers/{name:path}/start", containers.start),
    Route("POST", "/containers/{name:path}/stop", containers.stop),
    Route("POST", "/containers/{name:path}/restart", containers.restart),
    Route("POST", "/containers/{name:path}/kill", containers.kill),
    Route("POST", "/containers/{name:path}/wait", containers.wait),
    Route("POST", "/containers/{name:path}/resize", containers.resize),
    Route("POST", "/containers/{name:path}/attach", attach.attach),
    Route("WEBSOCKET", "/containers/{name:path}/attach/ws", attach.attach_ws),
    Route("POST", "/containers/{name:path}/copy", containers.copy),
    Route("HEAD", "/containers/{name:path}/archive", archive.head),
    Route("GET", "/containers/{name:path}/archive", archive.get),
    Route("PUT", "/containers/{name:path}/archive", archive.put),
    Route("POST", "/containers/{name:path}/exec", exec_instances.create),
    Route("POST", "/containers/{name:path}/rename", containers.rename),
    Route("POST", "/containers/{name:path}/pause", containers.pause),
    Route("POST", "/containers/{name:path}/unpause", containers.unpause),
    Route("GET", "/containers/{name:path}/stats", stats.stats),
    Route("POST", "/exec/{exec_id}/start", exec_instances.start),
    Route("GET", "/exec/{exec_id}/json", exec_instances.inspect),
    Route("POST", "/exec/{exec_id}/resize", exec_instances.resize),
    Route("DELETE", "/containers/{name:path}", containers.remove),
    Route("POST", "/commit", containers.commit),
    Route("GET", "/volumes", volumes.list_volumes),
    Route("POST", "/volumes/create", volumes.create),
    Route("POST", "/volumes/prune", volumes.prune),
    Route("GET", "/volumes/{name}", volumes.inspect),
    Route("DELETE", "/volumes/{name}", volumes.delete),
]
