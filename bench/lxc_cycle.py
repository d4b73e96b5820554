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
import subprocess
import tempfile
from pathlib import Path

from cycle import bench_driver, summary, timed  # bench/cycle.py: the same phases for any driver

from moorage.core.contract.rootfs import make_busybox_rootfs
from moorage.core.driver import NoOptions
from moorage.drivers.exec.lxc.driver import LxcDriver

MINIMAL_CONFIG = """\
lxc.uts.name = bench
lxc.rootfs.path = dir:{rootfs}
lxc.net.0.type = empty
lxc.console.path = none
lxc.tty.max = 0
lxc.autodev = 1
lxc.mount.auto = proc:mixed sys:ro
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50, help="cycles per measurement (default 50)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-lxc-"))
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        (base / "home").mkdir()
        driver = LxcDriver(base / "home", NoOptions(), {})
        bench_driver(driver, rootfs, base, 3, True, callback=True, quiet=True)  # warm caches
        print(f"{args.n} cycles of /bin/true in a busybox rootfs")
        bench_driver(driver, rootfs, base, args.n, True, callback=True)
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
