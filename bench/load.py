"""Load: N concurrent clients for S seconds over a mixed read/write workload (as root).

Each client loops over a random mix of reads (``/_ping``, ``/version``, ``/containers/json``,
``/containers/{id}/json``, ``/images/json``, ``/images/{name}/json``) and writes (create then
delete a container; tag then untag an image) on the daemon's unix socket. Prints the requests,
the errors (any unexpected status or failed request), p50/p99 per endpoint, and the daemon's
RSS before (after a warm-up) and after, and fails when there are errors or the RSS grew by
more than ``--rss-bound`` MB.

    .venv/bin/python bench/load.py --clients 100 --seconds 60   # the figures in docs/reliability.md
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from moorage.api.cli.harness import DaemonProcess, drivers_config


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Load:
    def __init__(self, base: Path) -> None:
        self.daemon = DaemonProcess(base, drivers_config(), tcp=False)
        self.daemon.start()
        self.sock = self.daemon.sock
        self.latencies: dict[str, list[float]] = {}
        self.errors: list[str] = []

    def setup(self, containers: int) -> list[str]:
        self.daemon.import_busybox()
        with self.daemon.client() as api:
            return [api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"]}).json()["Id"]
                    for _ in range(containers)]

    async def timed(self, api: httpx.AsyncClient, label: str, expected: int, method: str, path: str, **kwargs):
        started = time.perf_counter()
        try:
            response = await api.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            self.errors.append(f"{label}: {type(exc).__name__}: {exc}")
            return None
        self.latencies.setdefault(label, []).append(time.perf_counter() - started)
        if response.status_code != expected:
            self.errors.append(f"{label}: {response.status_code} {response.text[:200]}")
        return response

    async def client_loop(self, number: int, ids: list[str], until: float) -> None:
        rng = random.Random(number)
        transport = httpx.AsyncHTTPTransport(uds=str(self.sock))
        async with httpx.AsyncClient(transport=transport, base_url="http://moorage", timeout=120) as api:
            while time.monotonic() < until:
                op = rng.choice(["ping", "version", "ps", "inspect", "images", "image", "create+rm", "tag+rmi"])
                if op == "ping":
                    await self.timed(api, "GET /_ping", 200, "GET", "/_ping")
                elif op == "version":
                    await self.timed(api, "GET /version", 200, "GET", "/version")
                elif op == "ps":
                    await self.timed(api, "GET /containers/json", 200, "GET", "/containers/json",
                                     params={"all": 1})
                elif op == "inspect":
                    await self.timed(api, "GET /containers/{id}/json", 200, "GET",
                                     f"/containers/{rng.choice(ids)}/json")
                elif op == "images":
                    await self.timed(api, "GET /images/json", 200, "GET", "/images/json")
                elif op == "image":
                    await self.timed(api, "GET /images/{name}/json", 200, "GET", "/images/busybox/json")
                elif op == "create+rm":
                    created = await self.timed(api, "POST /containers/create", 201, "POST", "/containers/create",
                                               json={"Image": "busybox", "Cmd": ["true"]})
                    if created is not None and created.status_code == 201:
                        await self.timed(api, "DELETE /containers/{id}", 204, "DELETE",
                                         f"/containers/{created.json()['Id']}")
                else:
                    repo = f"load{number}-{rng.randrange(1 << 30)}"
                    await self.timed(api, "POST /images/{name}/tag", 201, "POST", "/images/busybox/tag",
                                     params={"repo": repo})
                    await self.timed(api, "DELETE /images/{name}", 200, "DELETE", f"/images/{repo}")

    async def run(self, clients: int, seconds: float, ids: list[str]) -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(self.client_loop(n, ids, until) for n in range(clients)))

def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--containers", type=int, default=20, help="containers made first, for the reads")
    parser.add_argument("--rss-bound", type=float, default=64, help="allowed RSS growth in MB (default 64)")
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="moorage-load-"))
    load = Load(base)
    try:
        ids = load.setup(args.containers)
        asyncio.run(load.run(args.clients, min(5.0, args.seconds), ids))  # warm-up
        load.latencies.clear()
        before = rss_mb(load.daemon.proc.pid)
        started = time.monotonic()
        asyncio.run(load.run(args.clients, args.seconds, ids))
        elapsed = time.monotonic() - started
        after = rss_mb(load.daemon.proc.pid)
        tracebacks = load.daemon.tracebacks()
    finally:
        load.daemon.dispose(remove=False, restart_dead=True)
        shutil.rmtree(base, ignore_errors=True)
    total = sum(len(v) for v in load.latencies.values())
    print(f"{args.clients} clients, {elapsed:.0f} s: {total} requests ({total / elapsed:.0f}/s), "
          f"{len(load.errors)} errors, {tracebacks} tracebacks in the daemon log")
    print(f"{'endpoint':28} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8}")
    for label, values in sorted(load.latencies.items()):
        print(f"{label:28} {len(values):9} {statistics.median(values) * 1000:8.1f} "
              f"{percentile(values, 0.99) * 1000:8.1f}")
    print(f"daemon RSS: {before:.1f} MB before, {after:.1f} MB after (bound: +{args.rss_bound:.0f} MB)")
    for error in load.errors[:20]:
        print("  " + error)
    return 0 if not load.errors and not tracebacks and after - before <= args.rss_bound else 1


if __name__ == "__main__":
    sys.exit(main())
