"""The container cycle benchmark of the exec driver: start + wait + release of ``/bin/true``.

Prints, for N cycles, the median / mean / min / max in milliseconds of:

- the native driver's start+wait+release (with and without a new network namespace, and with
  an ``on_namespace`` callback, which costs one more round trip with the monitor), split into
  start (until the command runs), wait (until the exit is recorded) and release;
- the same on N parallel-free runs of ``unshare --fork --pid --mount --uts --ipc --net chroot
  ROOTFS /bin/true`` and of ``chroot ROOTFS /bin/true``, for comparison.

The API part (create and remove through HTTP) is measured by the lead's API benchmark.
Run as root: ``.venv/bin/python bench/cycle.py [-n 100]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from moorage.core.contract.rootfs import make_busybox_rootfs
from moorage.core.driver import NoOptions
from moorage.core.hookspecs.exec import ProcessSpec
from moorage.drivers.exec.native.driver import NativeDriver

ENV = ["HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=bench"]


def summary(name: str, samples: list[float]) -> str:
    ms = [s * 1000 for s in samples]
    return (f"{name:<58} median {statistics.median(ms):6.2f}  mean {statistics.fmean(ms):6.2f}  "
            f"min {min(ms):6.2f}  max {max(ms):6.2f} ms")


def timed(n: int, fn: Callable[[], None]) -> list[float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def bench_driver(driver, rootfs: Path, base: Path, n: int, isolate_network: bool,
                 callback: bool = False, quiet: bool = False) -> None:
    """Start, wait and release ``/bin/true`` ``n`` times with any exec driver; print each phase."""
    phases: dict[str, list[float]] = {"start": [], "wait": [], "release": [], "total": []}
    for _ in range(n):
        cid = uuid.uuid4().hex * 2
        state_dir = base / "containers" / cid
        state_dir.mkdir(parents=True)
        spec = ProcessSpec(container_id=cid, rootfs=rootfs, args=["/bin/true"], env=ENV, hostname="bench",
                           state_dir=state_dir, log_path=state_dir / f"{cid}-json.log",
                           isolate_network=isolate_network)
        t0 = time.perf_counter()
        driver.start(spec, (lambda pid: None) if callback else None)
        t1 = time.perf_counter()
        status = driver.wait(cid)
        t2 = time.perf_counter()
        driver.release(cid)
        t3 = time.perf_counter()
        assert status == 0, status
        for name, value in (("start", t1 - t0), ("wait", t2 - t1), ("release", t3 - t2), ("total", t3 - t0)):
            phases[name].append(value)
        shutil.rmtree(state_dir)
    if quiet:
        return
    label = ("new netns" if isolate_network else "host netns") + (", on_namespace" if callback else "")
    for name, samples in phases.items():
        print(summary(f"{driver.name} {name} ({label})", samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100, help="cycles per measurement (default 100)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        (base / "home").mkdir()
        driver = NativeDriver(base / "home", NoOptions(), {})
        try:
            bench_driver(driver, rootfs, base, 3, True, quiet=True)  # start the zygote, warm caches
            print(f"{args.n} cycles of /bin/true in a busybox rootfs")
            bench_driver(driver, rootfs, base, args.n, True)
            bench_driver(driver, rootfs, base, args.n, True, callback=True)
            bench_driver(driver, rootfs, base, args.n, False)
        finally:
            driver.cleanup()
        for name, argv in (
            ("unshare --fork --pid --mount --uts --ipc --net chroot", ["unshare", "--fork", "--pid", "--mount",
             "--uts", "--ipc", "--net", "chroot", str(rootfs), "/bin/true"]),
            ("chroot", ["chroot", str(rootfs), "/bin/true"]),
        ):
            print(summary(name, timed(args.n, lambda argv=argv: subprocess.run(argv, check=True))))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
