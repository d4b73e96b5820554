"""``GET /containers/{id}/stats`` (beyond 1.6: Docker 1.5's endpoint; today's ``docker stats``):
the exec driver's ``ResourceUsage`` of the container's cgroups plus the byte counters of its
network interfaces, in Docker's JSON shape. ``stream=0`` answers one object; otherwise one
object a second until the container stops or the client goes."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from moorage.api.http.containers import RunnerDep
from moorage.api.http.params import KernelDep, parse_bool
from moorage.core.sdk.hookspecs.exec import ResourceUsage
from moorage.core.sdk.logs import rfc3339nano
from moorage.core.services.container import Container

ZERO_TIME = "0001-01-01T00:00:00Z"


def interface_counters(pid: int) -> dict[str, dict[str, int]]:
    """The counters of the container's interfaces but loopback, from its network namespace's
    ``/proc/<pid>/net/dev``."""
    networks: dict[str, dict[str, int]] = {}
    try:
        with open(f"/proc/{pid}/net/dev") as f:
            lines = f.readlines()[2:]
    except OSError:
        return networks
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        fields = rest.split()
        if name == "lo" or len(fields) < 16:
            continue
        values = [int(v) for v in fields]
        networks[name] = {"rx_bytes": values[0], "rx_packets": values[1], "rx_errors": values[2],
                          "rx_dropped": values[3], "tx_bytes": values[8], "tx_packets": values[9],
                          "tx_errors": values[10], "tx_dropped": values[11]}
    return networks


def system_cpu_ns() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:8]
    return sum(int(v) for v in fields) * 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


BLKIO_KEYS = ("io_service_bytes_recursive", "io_serviced_recursive", "io_queue_recursive",
              "io_service_time_recursive", "io_wait_time_recursive", "io_merged_recursive", "io_time_recursive",
              "sectors_recursive")


def stats_object(container: Container, usage: ResourceUsage, previous: dict | None) -> dict:
    cpu = {"cpu_usage": {"total_usage": usage.cpu_total_ns, "usage_in_kernelmode": usage.cpu_system_ns,
                         "usage_in_usermode": usage.cpu_user_ns},
           "system_cpu_usage": system_cpu_ns(), "online_cpus": os.cpu_count() or 1,
           "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}}
    return {
        "read": rfc3339nano(), "preread": previous["read"] if previous else ZERO_TIME,
        "pids_stats": {"current": usage.pids, **({"limit": usage.pids_limit} if usage.pids_limit else {})},
        "cpu_stats": cpu,
        "precpu_stats": previous["cpu_stats"] if previous else {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": {"usage": usage.memory_usage, "limit": usage.memory_limit or host_memory(), "stats": {}},
        # the exec drivers report no block I/O yet: Docker's keys, each null as it shows them
        # for a cgroup without the counters
        "blkio_stats": {key: None for key in BLKIO_KEYS},
        "num_procs": 0, "storage_stats": {},
        "networks": interface_counters(container.state.pid),
        "name": container.name, "id": container.id,
    }


async def stats(name: str, request: Request, kernel: KernelDep, runner: RunnerDep) -> Response:
    stream = parse_bool(request.query_params.get("stream", "1"), "stream")
    container, usage = await kernel.run_blocking(runner.stats, name)
    first = await kernel.run_blocking(stats_object, container, usage, None)
    if not stream:
        return JSONResponse(first)

    async def body() -> AsyncIterator[bytes]:
        previous = first
        yield json.dumps(previous).encode() + b"\n"
        while container.state.running:
            await asyncio.sleep(1)
            try:
                _, now = await kernel.run_blocking(runner.stats, name)
            except Exception:
                return
            previous = await kernel.run_blocking(stats_object, container, now, previous)
            yield json.dumps(previous).encode() + b"\n"

    return StreamingResponse(body(), media_type="application/json")
