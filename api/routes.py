"""The route table: the single place endpoints are declared.

Each row is (method, path, handler). Paths are unversioned; ``versioning`` serves them under
``/vX.Y`` too. ``{name:path}`` is greedy, so names with ``/`` work (``/images/user/repo/push``).
An endpoint is declared here only once it works.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from . import system


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
]
