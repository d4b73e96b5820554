"""``docker cp`` (beyond 1.6: Docker 1.8's endpoints, which today's CLI calls):
``HEAD``/``GET``/``PUT /containers/{id}/archive?path=``, with the path's stat in the
``X-Docker-Container-Path-Stat`` header (base64 JSON). See ``core/services/container_archive.py``."""

from __future__ import annotations

import asyncio

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from moorage.api.http.containers import ContainersDep, stream_chunks
from moorage.api.http.params import KernelDep, query_bool
from moorage.api.http.streams import BodyReader
from moorage.core.services.container_archive import ContainerArchive

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
