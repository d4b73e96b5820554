"""Container endpoints (v1.6): create, list, inspect, start, stop, restart, kill, wait, resize,
remove, changes, export, copy, top, commit. Attach is ``api/http/attach.py``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from moorage.api.http import containers_modern as modern
from moorage.api.http.crosssite import refuse_non_json
from moorage.api.http.params import ApiVersion, ContainersDep, KernelDep, RunnerDep, query_bool, query_int
from moorage.core.kernel.kernel import Kernel
from moorage.core.sdk.errors import Conflict, InvalidParameter, NotSupported
from moorage.core.sdk.ids import short_id
from moorage.core.services.container_config import check_legacy_config
from moorage.core.services.container_filesystem import ContainerFilesystem
from moorage.core.services.container_views import ContainerViews


async def json_body(request: Request, required: bool = False) -> Any:
    raw = await request.body()
    refuse_non_json(request, raw)
    if not raw.strip():
        if required:
            raise InvalidParameter("Bad parameter: a JSON body is required")
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise InvalidParameter(f"Bad parameter: the body is not valid JSON: {exc}") from None


def is_json(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return media == "application/json"


async def create(request: Request, kernel: KernelDep, containers: ContainersDep, version: ApiVersion) -> JSONResponse:
    body = await json_body(request, required=True)
    if not version.modern:
        check_legacy_config(body)
    name = request.query_params.get("name") or None
    container, warnings = await kernel.run_blocking(containers.create, body, name)
    if version.modern:
        return JSONResponse({"Id": container.id, "Warnings": warnings or []}, status_code=201)
    answer: dict = {"Id": short_id(container.id)}
    if warnings:
        answer["Warnings"] = warnings
    return JSONResponse(answer, status_code=201)


async def list_containers(request: Request, kernel: KernelDep, containers: ContainersDep,
                          version: ApiVersion) -> JSONResponse:
    if version.modern:
        return await modern.list_containers(request, kernel, containers)
    q = request.query_params
    limit_raw = q.get("limit", "")
    try:
        limit = int(limit_raw) if limit_raw else -1
    except ValueError:
        limit = -1  # Docker: an unparsable limit counts as -1
    rows = await kernel.run_blocking(ContainerViews(containers).list, query_bool(request, "all"), limit,
                                     q.get("since", ""), q.get("before", ""), query_bool(request, "size"))
    if version < 1.5:
        for row in rows:
            row["Ports"] = legacy_ports(row["Ports"])
            row.pop("Names", None)
    return JSONResponse(rows)


def legacy_ports(rows: list[dict] | None) -> str:
    """The pre-1.5 string form: ``0.0.0.0:49153->80/tcp, 8080/tcp`` (sorted)."""
    parts = []
    for p in rows or []:
        if p["PrivatePort"]:
            parts.append(f"{p['IP']}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}")
        else:
            parts.append(f"{p['PublicPort']}/{p['Type']}")
    return ", ".join(sorted(parts))


async def inspect(name: str, request: Request, kernel: KernelDep, containers: ContainersDep,
                  version: ApiVersion) -> JSONResponse:
    if version.modern:
        return await modern.inspect(name, request, kernel, containers)
    data = await kernel.run_blocking(ContainerViews(containers).inspect, name)
    if await kernel.run_blocking(containers.images.lookup, name) is not None:
        raise Conflict("Conflict between containers and images")
    return JSONResponse(data)


async def start(name: str, request: Request, kernel: KernelDep, runner: RunnerDep) -> Response:
    host_config = await json_body(request) if is_json(request) else None
    await kernel.run_blocking(runner.start, name, host_config)
    return Response(status_code=204)


def stop_timeout(request: Request) -> int:
    """``t`` in seconds; Docker used 10 for a missing, unparsable or negative value."""
    try:
        value = int(request.query_params.get("t", "10"))
    except ValueError:
        return 10
    return value if value >= 0 else 10


async def stop(name: str, request: Request, kernel: KernelDep, containers: ContainersDep, runner: RunnerDep,
               version: ApiVersion) -> Response:
    if version.modern:
        return await modern.stop(name, request, kernel, containers, runner)
    await kernel.run_waiting(runner.stop, name, stop_timeout(request))
    return Response(status_code=204)


async def restart(name: str, request: Request, kernel: KernelDep, containers: ContainersDep, runner: RunnerDep,
                  version: ApiVersion) -> Response:
    if version.modern:
        return await modern.restart(name, request, kernel, containers, runner)
    await kernel.run_waiting(runner.restart, name, stop_timeout(request))
    return Response(status_code=204)


async def kill(name: str, request: Request, kernel: KernelDep, containers: ContainersDep, runner: RunnerDep,
               version: ApiVersion) -> Response:
    signum = parse_signal(request.query_params.get("signal", ""))
    if version.modern:
        return await modern.kill(name, signum, kernel, containers, runner)
    await kernel.run_waiting(runner.kill, name, signum)
    return Response(status_code=204)


def parse_signal(value: str) -> int:
    import signal as signals

    if not value:
        return 0
    if value.isdigit():
        number = int(value)
    else:
        name = value.upper() if value.upper().startswith("SIG") else "SIG" + value.upper()
        number = getattr(signals.Signals, name, None) if name in signals.Signals.__members__ else None
        if number is None:
            raise InvalidParameter(f"Bad parameter: unknown signal {value!r}")
        number = int(number)
    if not 0 <= number < 65:
        raise InvalidParameter(f"Bad parameter: invalid signal {value!r}")
    return number


async def wait(name: str, request: Request, kernel: KernelDep, containers: ContainersDep, runner: RunnerDep,
               version: ApiVersion) -> JSONResponse:
    if version.modern:
        return await modern.wait(name, request, kernel, containers, runner)
    code = runner.exit_code_if_exited(name)
    if code is None:
        code = await kernel.run_waiting(runner.wait, name)
    return JSONResponse({"StatusCode": code})


async def resize(name: str, request: Request, kernel: KernelDep, runner: RunnerDep) -> Response:
    height, width = query_int(request, "h", 0), query_int(request, "w", 0)
    await kernel.run_blocking(runner.resize, name, height, width)
    return Response(status_code=200)


async def remove(name: str, request: Request, kernel: KernelDep, containers: ContainersDep,
                 runner: RunnerDep) -> Response:
    if query_bool(request, "link"):
        await kernel.run_blocking(containers.names.unlink, name)
        return Response(status_code=204)
    if query_bool(request, "force"):  # beyond 1.6 (today's `docker rm -f`): kill, then remove
        await kernel.run_waiting(runner.kill, name, 0)
    await kernel.run_blocking(containers.remove, name, query_bool(request, "v"))
    return Response(status_code=204)


async def changes(name: str, kernel: KernelDep, containers: ContainersDep) -> JSONResponse:
    return JSONResponse(await kernel.run_blocking(ContainerFilesystem(containers).changes, name))


async def stream_chunks(kernel: Kernel, chunks):
    iterator = iter(chunks)
    sentinel = object()
    try:
        while True:
            chunk = await kernel.run_waiting(next, iterator, sentinel)
            if chunk is sentinel:
                return
            yield chunk
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            await kernel.run_blocking(close)


async def export(name: str, kernel: KernelDep, containers: ContainersDep) -> StreamingResponse:
    chunks = await kernel.run_blocking(ContainerFilesystem(containers).export, name)
    return StreamingResponse(stream_chunks(kernel, chunks), media_type="application/octet-stream")


async def copy(name: str, request: Request, kernel: KernelDep, containers: ContainersDep) -> StreamingResponse:
    content_type = request.headers.get("content-type", "")
    if content_type != "application/json":
        raise InvalidParameter(f"Content-Type not supported: {content_type}")
    body = await json_body(request, required=True)
    resource = (body or {}).get("Resource", "") if isinstance(body, dict) else ""
    chunks = await kernel.run_blocking(ContainerFilesystem(containers).copy, name, resource)
    return StreamingResponse(stream_chunks(kernel, chunks), media_type="application/octet-stream")


async def top(name: str, request: Request, kernel: KernelDep, containers: ContainersDep,
              version: ApiVersion) -> JSONResponse:
    if version < 1.4:
        raise NotSupported("top was improved a lot since 1.3, Please upgrade your docker client.")
    ps_args = request.query_params.get("ps_args", "")
    return JSONResponse(await kernel.run_blocking(ContainerViews(containers).top, name, ps_args))


async def commit(request: Request, kernel: KernelDep, containers: ContainersDep) -> JSONResponse:
    q = request.query_params
    refuse_non_json(request, await request.body())
    try:
        config = await json_body(request)
    except InvalidParameter:
        config = None  # Docker only logged a config it could not decode
    image_id = await kernel.run_blocking(ContainerFilesystem(containers).commit, q.get("container", ""),
                                         q.get("repo", ""), q.get("tag", ""), q.get("comment", "") or q.get("m", ""),
                                         q.get("author", ""), config)
    return JSONResponse({"Id": short_id(image_id)}, status_code=201)


# -- beyond 1.6: what today's CLI calls (docs/api.md) ------------------------------------------
async def rename(name: str, request: Request, kernel: KernelDep, containers: ContainersDep) -> Response:
    await kernel.run_blocking(containers.rename, name, request.query_params.get("name", ""))
    return Response(status_code=204)


async def pause(name: str, kernel: KernelDep, runner: RunnerDep) -> Response:
    await kernel.run_waiting(runner.pause, name)
    return Response(status_code=204)


async def unpause(name: str, kernel: KernelDep, runner: RunnerDep) -> Response:
    await kernel.run_waiting(runner.unpause, name)
    return Response(status_code=204)
