"""``docker cp`` (beyond 1.6: Docker 1.8's endpoints, which today's CLI calls):
``HEAD``/``GET``/``PUT /containers/{id}/archive?path=``, with the path's stat in the
``X-Docker-Container-Path-Stat`` header (base64 JSON). See ``core/container_archive.py``."""

from __future__ import annotations

import asyncio

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from ..core.container_archive import ContainerArchive
from .containers import ContainersDep, stream_chunks
from .params import KernelDep, query_bool
from .streams import BodyReader

STAT_HEADER = "X-Docker-Container-Path-Stat"


async def head(name: str, request: Request, kernel: KernelDep, containers: ContainersDep) -> Response:
    found = await kernel.run_blocking(ContainerArchive(containers).stat, name, request.query_params.get("path", ""))
    return Response(status_code=200, headers={STAT_HEADER: found.header()})


async def get(name: str, request: Request, kernel: KernelDep, containers: ContainersDep) -> StreamingResponse:
    found, chunks = await kernel.run_blocking(ContainerArchive(containers).get, name,
                                              request.query_params.get("path", ""))
    return StreamingResponse(stream_chunks(kernel, chunks), media_type="application/x-tar",
                             headers={STAT_HEADER: found.header()})


async def put(name: str, request: Request, kernel: KernelDep, containers: ContainersDep) -> Response:
    body = BodyReader(request.stream(), asyncio.get_running_loop())
    await kernel.run_waiting(ContainerArchive(containers).put, name, request.query_params.get("path", ""), body,
                             query_bool(request, "noOverwriteDirNonDir"))
    return Response(status_code=200)
