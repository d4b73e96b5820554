"""``docker exec`` (beyond 1.6: Docker 1.3's endpoints, which today's CLI calls):
``POST /containers/{id}/exec``, ``POST /exec/{id}/start`` (the connection is taken over as for
attach: raw with a tty, else multiplexed frames), ``GET /exec/{id}/json`` and
``POST /exec/{id}/resize``."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import Request, Response
from fastapi.responses import JSONResponse

from moorage.api.http.attach import OutputWriter, copy_output
from moorage.api.http.containers import RunnerDep, json_body
from moorage.api.http.hijack import hijack, wants_upgrade
from moorage.api.http.params import KernelDep, query_int
from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.exec import Stream


async def create(name: str, request: Request, kernel: KernelDep, runner: RunnerDep) -> JSONResponse:
    body = await json_body(request, required=True)
    instance = await kernel.run_blocking(runner.execs.create, name, body)
    return JSONResponse({"Id": instance.id}, status_code=201)


async def inspect(exec_id: str, kernel: KernelDep, runner: RunnerDep) -> JSONResponse:
    instance = await kernel.run_blocking(runner.execs.get, exec_id)
    return JSONResponse(instance.to_api())


async def resize(exec_id: str, request: Request, kernel: KernelDep, runner: RunnerDep) -> Response:
    await kernel.run_blocking(runner.execs.resize, exec_id, query_int(request, "h", 0), query_int(request, "w", 0))
    return Response(status_code=201)


async def start(exec_id: str, request: Request, kernel: KernelDep, runner: RunnerDep) -> Response:
    body = await json_body(request) or {}
    if not isinstance(body, dict):
        raise InvalidParameter("Bad parameter: the exec start config must be a JSON object")
    execs = runner.execs
    instance = await kernel.run_blocking(execs.start, exec_id)  # errors are ordinary answers
    if body.get("Detach"):
        kernel.submit(execs.run_detached, instance)
        return Response(status_code=200)
    process, spec = instance.process, instance.spec
    raw = hijack(request.scope)
    wanted = {Stream.STDOUT: instance.attach_stdout, Stream.STDERR: instance.attach_stderr}
    out = OutputWriter(raw, multiplex=not spec.tty)

    async def pump_output() -> None:
        try:
            await copy_output(kernel, process, out, wanted)
        except (ConnectionError, OSError):  # the client went: the output is read to the end
            while await kernel.run_waiting(process.read) is not None:
                pass

    async def pump_input() -> None:
        while True:
            data = await raw.read()
            if not data:
                break
            with contextlib.suppress(Exception):
                await kernel.run_waiting(process.write, data)
        await kernel.run_blocking(process.close_stdin)

    input_task = None
    try:
        await raw.send_status(upgrade=wants_upgrade(request.headers))
        if spec.open_stdin:
            input_task = asyncio.ensure_future(pump_input())
        await pump_output()
    except (ConnectionError, OSError):
        pass
    finally:
        # the exit code is recorded before the client, which asks for it next, sees the end
        await kernel.run_waiting(execs.finish, instance)
        if input_task is not None:
            input_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await input_task
        raw.close()
    return Response()
