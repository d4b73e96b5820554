"""The native driver's cgroup steps alone, on whatever layout the host has (v1 or v2): what a
container start and release spend on cgroups, step by step.

For N fresh container ids, the median / mean / min / max in milliseconds of:

- ``create``: the directories, the limits and the device rules (v1: the devices controller's
  ``deny``/``allow`` writes; v2: loading and attaching the eBPF program), with no limits and
  with memory, cpu and pids limits;
- ``join``: a forked child writing ``0`` to each of ``join_files`` (what pid 1 does), timed
  in the child;
- ``remove``: the kill check and the rmdirs.

Run as root: ``.venv/bin/python bench/cgroups.py [-n 200]``; in the cgroup v2 VM and, for the
same kernel with v1, ``tests/vm/run.py [--cgroup-v1] --shell .venv/bin/python bench/cgroups.py``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

from moorage.core.sdk.hookspecs.exec import Resources
from moorage.drivers.exec.native.cgroups import probe


def summary(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (f"{name:<44} median {statistics.median(ms):6.3f}  mean {statistics.fmean(ms):6.3f}  "
            f"min {min(ms):6.3f}  max {max(ms):6.3f} ms")


def join(files: list[str]) -> float:
    """Seconds a forked child spends writing ``0`` to each file (timed in the child)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            t0 = time.perf_counter()
            for path in files:
                fd = os.open(path, os.O_WRONLY)
                os.write(fd, b"0")
                os.close(fd)
            os.write(write_end, str(time.perf_counter() - t0).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    spent = float(os.read(read_end, 64))
    os.close(read_end)
    os.waitpid(pid, 0)
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=200, help="containers per measurement (default 200)")
    args = parser.parse_args()
    hierarchy = probe()
    print(f"cgroup v{hierarchy.version}, {args.n} containers each")
    for label, resources in (("no limits", Resources()),
                             ("memory+cpu+pids", Resources(memory=64 << 20, cpu_shares=512, pids=100))):
        phases: dict[str, list[float]] = {"create": [], "join": [], "remove": []}
        for _ in range(args.n):
            cgroups = hierarchy.container(f"bench-{uuid.uuid4().hex}")
            t0 = time.perf_counter()
            cgroups.create(resources, privileged=False)
            t1 = time.perf_counter()
            joined = join(cgroups.join_files())
            t2 = time.perf_counter()
            cgroups.remove()
            t3 = time.perf_counter()
            for name, value in (("create", t1 - t0), ("join", joined), ("remove", t3 - t2)):
                phases[name].append(value)
        for name, samples in phases.items():
            print(summary(f"{name} ({label})", samples))
    hierarchy.remove_unused_parents()


if __name__ == "__main__":
    main()
