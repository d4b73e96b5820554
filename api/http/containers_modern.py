"""Container endpoints in today's shapes (API 1.24 and above): the version's view of the same
services the 1.6 handlers call (``api/http/containers.py`` dispatches here by version), and
the lifecycle endpoints today's API added (``wait?condition=``, prune)."""

from __future__ import annotations

import json
import signal as signals
import time

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from moorage.api.http.params import ContainersDep, KernelDep, RunnerDep, query_bool
from moorage.api.http.system import parse_filters
from moorage.core.kernel.kernel import Kernel
from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.services.container_modern import ModernViews, label_filter, parse_until, state_status
from moorage.core.services.containers import ContainerService
from moorage.core.services.images import parse_time
from moorage.core.services.runner import Runner

WAIT_CONDITIONS = ("not-running", "next-exit", "removed")
_POLL = 0.05


def list_limit(request: Request) -> int:
    raw = request.query_params.get("limit", "")
    try:
        return int(raw) if raw else -1
    except ValueError:
        raise InvalidParameter(f"Bad parameter: limit={raw!r} is not an integer") from None


async def list_containers(request: Request, kernel: Kernel, containers: ContainerService) -> JSONResponse:
    filters = parse_filters(request.query_params.get("filters", ""))
    rows = await kernel.run_blocking(ModernViews(containers).list, query_bool(request, "all"), list_limit(request),
                                     query_bool(request, "size"), filters)
    return JSONResponse(rows)


async def inspect(name: str, request: Request, kernel: Kernel, containers: ContainerService) -> JSONResponse:
    data = await kernel.run_blocking(ModernViews(containers).inspect, name)
    if query_bool(request, "size"):
        views = ModernViews(containers)
        container = containers.get(name)
        data["SizeRw"] = await kernel.run_blocking(views.legacy.size_rw, container)
        images = containers.images
        data["SizeRootFs"] = data["SizeRw"] + images.virtual_size(images.get(container.image))
    return JSONResponse(data)


def _wait_for(containers: ContainerService, name: str, condition: str) -> int:
    """Blocks (in a waiting thread) until ``condition`` holds; the exit code then. ``next-exit``
    and ``removed`` on a container that is not running wait for its next run (today's CLI asks
    before it starts the container), ``removed`` ends too when it is removed without one."""
    container = containers.get(name)
    if condition != "not-running" and container.exited.is_set():
        began = container.state.started_at  # a new run sets it (after clearing ``exited``)
        while container.state.started_at == began and not container.removed:
            time.sleep(_POLL)
    container.exited.wait()
    code = container.state.exit_code
    if condition == "removed":
        while not container.removed and containers.lookup(container.id) is not None:
            time.sleep(_POLL)
    return code


async def wait(name: str, request: Request, kernel: Kernel, containers: ContainerService,
               runner: Runner) -> StreamingResponse:
    """The headers go out at once and the body when the condition holds, as Docker answers:
    today's clients wait for the headers before they start the container they wait for."""
    condition = request.query_params.get("condition", "") or "not-running"
    if condition not in WAIT_CONDITIONS:
        raise InvalidParameter(f"invalid condition: {condition!r}")
    container = containers.get(name)

    async def body():
        if condition == "not-running" and container.exited.is_set():
            code = container.state.exit_code
        else:
            code = await kernel.run_waiting(_wait_for, containers, container.id, condition)
        yield json.dumps({"StatusCode": code, "Error": None}).encode() + b"\n"

    return StreamingResponse(body(), media_type="application/json")


async def kill(name: str, signum: int, kernel: Kernel, containers: ContainerService, runner: Runner) -> Response:
    container = containers.get(name)
    if not container.state.running:
        raise Conflict(f"Cannot kill container: {name}: Container {container.id} is not running")
    await kernel.run_waiting(runner.kill, name, signum)
    return Response(status_code=204)


def _stop_with(runner: Runner, containers: ContainerService, name: str, timeout: int, signum: int) -> None:
    """Stop with a signal other than SIGTERM: the signal, ``timeout`` seconds for the exit,
    then the ordinary stop (which kills what is left and keeps restart policies off)."""
    container = containers.get(name)
    if signum and signum != signals.SIGTERM:
        runner.kill(container.id, signum)
        container.exited.wait(timeout)
        timeout = 0
    runner.stop(container.id, timeout)


def stop_parameters(request: Request, containers: ContainerService, name: str) -> tuple[int, int]:
    """``t`` (else the container's ``StopTimeout``, else 10; -1 waits forever, as Docker) and
    ``signal`` (else the container's ``StopSignal``)."""
    from moorage.api.http.containers import parse_signal

    container = containers.get(name)
    raw = request.query_params.get("t", "")
    if raw:
        try:
            timeout = int(raw)
        except ValueError:
            raise InvalidParameter(f"Bad parameter: t={raw!r} is not an integer") from None
    else:
        stored = container.config.stop_timeout
        timeout = stored if isinstance(stored, int) else 10
    if timeout < 0:
        timeout = 2 ** 31
    signum = parse_signal(request.query_params.get("signal", "") or container.config.stop_signal or "")
    return timeout, signum


async def stop(name: str, request: Request, kernel: Kernel, containers: ContainerService, runner: Runner) -> Response:
    container = containers.get(name)
    if not container.state.running:
        # between two runs of a restart policy it must stand down all the same, as Docker's stop
        # of a restarting container does
        await kernel.run_waiting(runner.stop, name, 0)
        return Response(status_code=304)
    timeout, signum = stop_parameters(request, containers, name)
    await kernel.run_waiting(_stop_with, runner, containers, name, timeout, signum)
    return Response(status_code=204)


async def restart(name: str, request: Request, kernel: Kernel, containers: ContainerService,
                  runner: Runner) -> Response:
    timeout, signum = stop_parameters(request, containers, name)
    if signum and signum != signals.SIGTERM and containers.get(name).state.running:
        await kernel.run_waiting(_stop_with, runner, containers, name, timeout, signum)
        timeout = 0
    await kernel.run_waiting(runner.restart, name, timeout)
    return Response(status_code=204)


def _prune(containers: ContainerService, filters: dict[str, list[str]]) -> dict:
    for key in filters:
        if key not in ("until", "label", "label!"):
            raise InvalidParameter(f"invalid filter '{key}'")
    until = parse_until(filters["until"][0]) if filters.get("until") else None
    deleted, reclaimed = [], 0
    views = ModernViews(containers)
    for container in containers.all():
        if state_status(container) not in ("exited", "created", "dead"):
            continue
        labels = container.config.labels or {}
        if filters.get("label") and not label_filter(labels, filters["label"]):
            continue
        if filters.get("label!") and label_filter(labels, filters["label!"]):
            continue
        if until is not None and parse_time(container.created) >= until:
            continue
        size = views.legacy.size_rw(container)
        try:
            containers.remove(container.id)
        except (NotFound, Conflict):
            continue
        deleted.append(container.id)
        reclaimed += size
    return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}


async def prune(request: Request, kernel: KernelDep, containers: ContainersDep, runner: RunnerDep) -> JSONResponse:
    """``POST /containers/prune`` (today's API only): removes the stopped containers the
    ``until``/``label`` filters select."""
    filters = parse_filters(request.query_params.get("filters", ""))
    return JSONResponse(await kernel.run_blocking(_prune, containers, filters))
