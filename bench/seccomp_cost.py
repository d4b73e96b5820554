"""The start cost of the seccomp filter: what it adds to each container start.

Per start the daemon resolves the profile for the container's capabilities (Python, in the
driver's start), the monitor builds the libseccomp filter from it before the clone, and the
container's first process compiles and loads it. This script times each part on its own
(resolve; build + compile + load in a forked child), then the native driver's start of
``/bin/true`` with the default confinement and with ``seccomp_profile = "unconfined"``.

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

from moorage.core.contract.rootfs import make_busybox_rootfs
from moorage.core.driver import NoOptions
from moorage.core.hookspecs.exec import ProcessSpec
from moorage.core.security import Confinement
from moorage.drivers.exec.common.policy import ALL_CAPABILITIES as ALL_CAPABILITIES_MASK
from moorage.drivers.exec.native import container
from moorage.drivers.exec.native.driver import NativeDriver


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.2f} ms (min {min(samples) * 1000:.2f})"


def time_filter(runs: int) -> tuple[list[float], list[float]]:
    confinement = Confinement()
    resolve, load = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        data = confinement.seccomp_filter().to_json()
        resolve.append(time.perf_counter() - t0)
        pid = os.fork()
        if pid == 0:  # build, compile and load in a throwaway child, as confine() does
            t0 = time.perf_counter()
            container.confine(ALL_CAPABILITIES_MASK, data)
            os._exit(int((time.perf_counter() - t0) * 1e6) // 1000 % 256)
        _, status = os.waitpid(pid, 0)
        load.append(os.waitstatus_to_exitcode(status) / 1000)
    return resolve, load


def time_starts(runs: int, confinement: Confinement | None, base: Path) -> list[float]:
    home = base / f"home-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    driver = NativeDriver(home, NoOptions(), {})
    rootfs = make_busybox_rootfs(base / f"rootfs-{uuid.uuid4().hex[:6]}")
    samples = []
    try:
        for _ in range(runs + 2):  # the first two start the driver's zygote and warm it: not counted
            cid = uuid.uuid4().hex * 2
            state = base / cid
            state.mkdir()
            spec = ProcessSpec(container_id=cid, rootfs=rootfs, args=["/bin/true"], env=["PATH=/bin"], hostname="b",
                               state_dir=state, log_path=state / "log")
            if confinement is not None:
                spec = replace(spec, confinement=confinement)
            t0 = time.perf_counter()
            driver.start(spec)
            samples.append(time.perf_counter() - t0)
            driver.wait(cid, 30)
            driver.release(cid)
    finally:
        driver.cleanup()
    return samples[2:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    resolve, load = time_filter(args.runs)
    print(f"resolve the profile for a container:       {median_ms(resolve)}")
    print(f"build + compile + load the filter (ms, 1 ms resolution): median {statistics.median(load):.0f}")
    base = Path(tempfile.mkdtemp(prefix="moorage-seccomp-bench-"))
    try:
        confined = time_starts(args.runs, None, base)
        unconfined = time_starts(args.runs, Confinement(seccomp=None), base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"native start, default confinement:         {median_ms(confined)}")
    print(f"native start, no seccomp filter:           {median_ms(unconfined)}")
    print(f"the filter's share of a start:             "
          f"{(statistics.median(confined) - statistics.median(unconfined)) * 1000:.2f} ms")


if __name__ == "__main__":

    main()
