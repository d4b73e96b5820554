"""The start cost of the seccomp filter: what it adds to each container start.

Per start the daemon resolves the profile for the container's capabilities (Python, in the
driver's start); the native driver compiles it with libseccomp once per distinct filter and
keeps the program; the container's first process loads it. This script times each part on its
own, then the native driver's start of ``/bin/true`` with the default confinement and with
``seccomp_profile = "unconfined"``.

    .venv/bin/python bench/seccomp_cost.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.hookspecs.exec import ProcessSpec
from moorage.core.sdk.rootfs import make_busybox_rootfs
from moorage.core.sdk.security import Confinement
from moorage.drivers.exec.common.policy import ALL_CAPABILITIES as ALL_CAPABILITIES_MASK
from moorage.drivers.exec.native import container
from moorage.drivers.exec.native.driver import NativeDriver


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.2f} ms (min {min(samples) * 1000:.2f})"


def time_filter(runs: int) -> tuple[list[float], list[float], list[float]]:
    """Resolving, compiling (once per distinct filter, in the driver) and loading (each start, in
    the container's process: timed in a forked child, which reports through a pipe)."""
    confinement = Confinement()
    resolve, compile_, load = [], [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        data = confinement.seccomp_filter().to_json()
        resolve.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        program = container.compile_filter(data)
        compile_.append(time.perf_counter() - t0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            t0 = time.perf_counter()
            container.confine(ALL_CAPABILITIES_MASK, program)
            os.write(w, repr(time.perf_counter() - t0).encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        load.append(float(os.read(r, 64)))
        os.close(r)
    return resolve, compile_, load


def time_starts(runs: int, base: Path) -> tuple[list[float], list[float]]:
    """Native starts of ``/bin/true`` alternating between the default confinement and the same
    without a filter (alternating: the machine's load changes under a long run)."""
    home = base / "home"
    home.mkdir()
    driver = NativeDriver(DriverContext.standalone(NativeDriver, home))
    rootfs = make_busybox_rootfs(base / "rootfs")
    samples: dict[bool, list[float]] = {True: [], False: []}
    unconfined = Confinement(seccomp=None)
    try:
        for i in range(2 * runs + 4):  # the first four start the driver's zygote and warm it: not counted
            with_filter = i % 2 == 0
            cid = uuid.uuid4().hex * 2
            state = base / cid
            state.mkdir()
            spec = ProcessSpec(container_id=cid, rootfs=rootfs, args=["/bin/true"], env=["PATH=/bin"], hostname="b",
                               state_dir=state, log_path=state / "log")
            if not with_filter:
                spec = replace(spec, confinement=unconfined)
            t0 = time.perf_counter()
            driver.start(spec)
            if i >= 4:
                samples[with_filter].append(time.perf_counter() - t0)
            driver.wait(cid, 30)
            driver.release(cid)
    finally:
        driver.cleanup()
    return samples[True], samples[False]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    resolve, compile_, load = time_filter(args.runs)
    print(f"resolve the profile for a container:       {median_ms(resolve)}")
    print(f"compile it (once per distinct filter):     {median_ms(compile_)}")
    print(f"confine a process (caps, ids, load it):    {median_ms(load)}")
    base = Path(tempfile.mkdtemp(prefix="moorage-seccomp-bench-"))
    try:
        confined, unconfined = time_starts(args.runs, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"native start, default confinement:         {median_ms(confined)}")
    print(f"native start, no seccomp filter:           {median_ms(unconfined)}")
    print(f"the filter's share of a start:             "
          f"{(statistics.median(confined) - statistics.median(unconfined)) * 1000:.2f} ms")


if __name__ == "__main__":

    main()
