"""System endpoints: ``/_ping``, ``/version``, ``/info``, ``/events``."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import threading
import time
from pathlib import Path

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from moorage.api import ADVERTISED_VERSION_STR
from moorage.api.http.params import ApiVersion, KernelDep, query_int
from moorage.api.http.system_modern import modern_info, modern_version
from moorage.core import __version__
from moorage.core.kernel.kernel import Kernel
from moorage.core.sdk.errors import InvalidParameter


async def ping(request: Request) -> PlainTextResponse:
    """``OK`` with ``Api-Version``: the version today's clients negotiate (``ADVERTISED_VERSION_STR``),
    and the headers today's Docker adds."""
    return PlainTextResponse("OK", headers={"Api-Version": ADVERTISED_VERSION_STR, "Cache-Control": "no-cache",
                                            "Docker-Experimental": "false", "Ostype": "linux",
                                            "Pragma": "no-cache"})


def _git_commit() -> str:
    here = Path(__file__).resolve().parent.parent
    head = here / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            return (here / ".git" / ref[5:]).read_text().strip()[:7]
        return ref[:7]
    except OSError:
        return ""


_GIT_COMMIT = _git_commit()


async def version(kernel: KernelDep, api: ApiVersion) -> JSONResponse:
    """``Version`` is moorage's own; ``GitCommit`` the source commit when known; ``GoVersion``
    names the Python that runs the daemon (docs/api.md). Today's shape at 1.24 and above."""
    if api.modern:
        return JSONResponse(modern_version(_GIT_COMMIT))
    body = {"Version": __version__}
    if _GIT_COMMIT:
        body["GitCommit"] = _GIT_COMMIT
    body["GoVersion"] = f"{platform.python_implementation()} {platform.python_version()}"
    # Not in 1.6 (Docker 0.8 and later added them); today's docker CLI prints them, and a
    # 1.6 client ignores keys it does not know.
    body.update(ApiVersion=ADVERTISED_VERSION_STR, MinAPIVersion="1.0", Os="linux",
                Arch={"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine()),
                KernelVersion=platform.release())
    return JSONResponse(body)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def collect_info(kernel: Kernel) -> dict:
    """The /info object: Debug, Containers, Images always; other keys only when non-zero."""
    services = kernel.services
    graph = kernel.drivers.graph
    exec_driver = kernel.drivers.exec
    memory_limit, swap_limit = exec_driver.memory_limits() if exec_driver else (False, False)
    info = {
        "Debug": kernel.config.daemon.debug,
        "Containers": len(services.containers) if services.containers is not None else 0,
        "Images": len(services.images) if services.images is not None else 0,
        "NFd": len(os.listdir("/proc/self/fd")),
        "NGoroutines": threading.active_count(),
        "MemoryLimit": memory_limit,
        "SwapLimit": swap_limit,
        "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward") == "1",
        "NEventsListener": len(kernel.events),
        "KernelVersion": platform.release() or "<unknown>",
        "Driver": graph.name if graph else "",
        "DriverStatus": [list(pair) for pair in graph.status()] if graph else [],
        "ExecutionDriver": exec_driver.name if exec_driver else "",
        "Drivers": {family: (d.name if d else "") for family, d in kernel.drivers.by_family().items()},
    }
    keep = {"Debug", "Containers", "Images"}
    return {k: v for k, v in info.items() if k in keep or v}


async def info(kernel: KernelDep, api: ApiVersion) -> JSONResponse:
    legacy = await kernel.run_blocking(collect_info, kernel)
    if api.modern:
        return JSONResponse(await kernel.run_blocking(modern_info, kernel, legacy))
    return JSONResponse(legacy)


def parse_filters(raw: str) -> dict[str, list[str]]:
    """Docker's ``filters`` JSON (1.16+; accepted so that today's CLI can follow one container):
    ``{"container": ["id"]}`` or the older ``{"container": {"id": true}}``."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"Bad parameter: filters={raw!r} is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidParameter("Bad parameter: filters must be a JSON object")
    return {str(k): [str(x) for x in (v if isinstance(v, list) else list(v or {}))] for k, v in data.items()}


async def events(request: Request, kernel: KernelDep) -> StreamingResponse:
    """Replay stored events with ``time >= since`` (when since is set), then stream new ones,
    each a JSON object written and flushed alone, with no separator (the v1.6 format)."""
    since = query_int(request, "since", 0)
    until = query_int(request, "until", 0)  # beyond 1.6: ends the stream (today's `events --until`)
    filters = parse_filters(request.query_params.get("filters", ""))
    queue = kernel.events.subscribe()  # before the replay, so nothing falls in between
    replay = [e for e in kernel.events.history(max(since, 1)) if e.matches(filters)] if since > 0 or until else []
    if until:
        replay = [e for e in replay if e.time <= until]

    async def stream():
        try:
            seen = set()
            for event in replay:
                seen.add(id(event))
                yield json.dumps(event.to_api()).encode()
            while True:
                if until:
                    left = until + 1 - time.time()  # events of second ``until`` still count
                    if left <= 0:
                        return
                    try:
                        event = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        return
                else:
                    event = await queue.get()
                if id(event) in seen or not event.matches(filters) or (until and event.time > until):
                    continue
                yield json.dumps(event.to_api()).encode()
        except asyncio.CancelledError:
            raise
        finally:
            kernel.events.unsubscribe(queue)

    return StreamingResponse(stream(), media_type="application/json")
