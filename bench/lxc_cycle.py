"""The container cycle benchmark of the ``lxc`` exec driver, beside ``lxc-execute`` run directly.

Prints, for N cycles of ``/bin/true`` in a busybox rootfs, the median / mean / min / max in
milliseconds of:

- the lxc driver's start (until the command runs), wait (until the exit is recorded), release
  and their total, with a new network namespace and with the host's;
- ``lxc-execute`` with a minimal config on the same rootfs, i.e. LXC's own cost, so that the
  driver's overhead (its monitor process, the start-host hook, the config file) is visible.

``bench/cycle.py`` prints the same phases for the ``native`` driver.
Run as root: ``.venv/bin/python bench/lxc_cycle.py [-n 50]``.
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
from moorage.drivers.exec.lxc.driver import LxcDriver

ENV = ["HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=bench"]
MINIMAL_CONFIG = """\
lxc.uts.name = bench
lxc.rootfs.path = dir:{rootfs}
lxc.net.0.type = empty
lxc.console.path = none
lxc.tty.max = 0
lxc.autodev = 1
lxc.mount.auto = proc:mixed sys:ro
"""


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


def bench_driver(driver: LxcDriver, rootfs: Path, base: Path, n: int, isolate_network: bool,
                 quiet: bool = False) -> None:
    phases: dict[str, list[float]] = {"start": [], "wait": [], "release": [], "total": []}
    for _ in range(n):
        cid = uuid.uuid4().hex * 2
        state_dir = base / "containers" / cid
        state_dir.mkdir(parents=True)
        spec = ProcessSpec(container_id=cid, rootfs=rootfs, args=["/bin/true"], env=ENV, hostname="bench",
                           state_dir=state_dir, log_path=state_dir / f"{cid}-json.log",
                           isolate_network=isolate_network)
        t0 = time.perf_counter()
        driver.start(spec, (lambda pid: None) if isolate_network else None)
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
    label = "new netns, on_namespace" if isolate_network else "host netns"
    for name, samples in phases.items():
        print(summary(f"lxc {name} ({label})", samples))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="cycles per measurement (default 50)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-lxc-"))
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        (base / "home").mkdir()
        driver = LxcDriver(base / "home", NoOptions(), {})
        bench_driver(driver, rootfs, base, 3, True, quiet=True)  # warm caches
        print(f"{args.n} cycles of /bin/true in a busybox rootfs")
        bench_driver(driver, rootfs, base, args.n, True)
        bench_driver(driver, rootfs, base, args.n, False)
        config = base / "minimal.conf"
        config.write_text(MINIMAL_CONFIG.format(rootfs=rootfs))
        lxcpath = base / "lxcpath"
        lxcpath.mkdir()
        argv = ["lxc-execute", "-n", "bench", "-P", str(lxcpath), "-f", str(config), "--", "/bin/true"]
        print(summary("lxc-execute (minimal config)", timed(args.n, lambda: subprocess.run(argv, check=True))))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
