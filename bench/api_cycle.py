"""The container cycle through the API: create + start + wait + remove of ``/bin/true``.

Starts a daemon on a scratch root, imports the busybox image, and prints per-cycle figures for
each graph/exec/network combination asked for, beside ``unshare --fork --pid --mount --uts
--ipc --net chroot ROOTFS /bin/true`` run as often. With ``--network bridge`` the daemon gets a
bridge and nft table of its own (removed afterwards), and the difference to ``none`` is printed
as the network driver's share of a cycle.

The client is the standard library's ``http.client`` on one keep-alive connection, the leanest
Python client there is: the figures are the daemon's. (httpx adds about 1 ms per request on
this machine, four per cycle; the Go docker CLI adds less than either.)

    .venv/bin/python bench/api_cycle.py [--cycles 50] [--graph overlay] [--exec native] [--network none]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import astuple
from pathlib import Path

from moorage.api.cli.bench.apicycle import PHASES, Cycle  # the one API cycle, shared with `moorage bench`
from moorage.api.cli.bench.apicycle import api_cycles as run_api_cycles
from moorage.api.cli.harness import drivers_config
from moorage.core.sdk.errors import ConfigError
from moorage.core.sdk.mounts import unmount_below
from moorage.core.sdk.rootfs import make_busybox_rootfs, tar_directory

BRIDGE = '[network.bridge]\nname = "{name}"\ntable = "{table}"\n'

def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    return f"median {statistics.median(ms):6.1f} ms   p90 {p90:6.1f} ms   min {ms[0]:6.1f} ms"


def api_cycles(base: Path, graph: str, exec_driver: str, network: str, cycles: int, tar: Path) -> list[float]:
    config = drivers_config(graph, exec_driver) + f'[network]\ndriver = "{network}"\n'
    suffix = base.name[-6:].replace("-", "")
    if network == "bridge":
        config += BRIDGE.format(name=f"mbench{suffix}"[:15], table=f"moorage-bench-{suffix}")
    measured: list[Cycle] = []
    try:
        run_api_cycles(base, config, tar, cycles, measured.append)
    except (ConfigError, RuntimeError) as exc:
        raise SystemExit(f"{graph} + {exec_driver} + {network}: {exc}") from None
    print(f"  {graph} + {exec_driver} + {network}, median per request: "
          + ", ".join(f"{phase} {statistics.median(seconds) * 1000:.1f} ms"
                      for phase, seconds in zip(PHASES, zip(*map(astuple, measured), strict=True), strict=True)))
    return [c.total for c in measured]


def unshare_cycles(rootfs: Path, cycles: int) -> list[float]:
    samples = []
    for _ in range(cycles):
        t0 = time.perf_counter()
        subprocess.run(["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot", str(rootfs),
                        "/bin/true"], check=True)
        samples.append(time.perf_counter() - t0)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--graph", action="append", help="graph driver(s) (default: overlay)")
    parser.add_argument("--exec", dest="exec_drivers", action="append", help="exec driver(s) (default: native)")
    parser.add_argument("--network", dest="networks", action="append", help="network driver(s) (default: none)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        tar = tar_directory(rootfs, base / "busybox.tar")
        print(f"{args.cycles} cycles of create+start+wait+remove of /bin/true, load average "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        print(f"{'unshare + chroot (baseline)':40s} {figures(unshare_cycles(rootfs, args.cycles))}")
        for graph in args.graph or ["overlay"]:
            for exec_driver in args.exec_drivers or ["native"]:
                medians = {}
                for network in args.networks or ["none"]:
                    run_dir = Path(tempfile.mkdtemp(prefix=f"{graph}-{exec_driver}-{network}-", dir=base))
                    samples = api_cycles(run_dir, graph, exec_driver, network, args.cycles, tar)
                    medians[network] = statistics.median(samples) * 1000
                    print(f"{'API, ' + graph + ' + ' + exec_driver + ' + ' + network:40s} {figures(samples)}")
                if "none" in medians and "bridge" in medians:
                    share = medians["bridge"] - medians["none"]
                    print(f"{'  network driver share (bridge - none)':40s} {share:6.1f} ms")
    finally:
        unmount_below(base)
        shutil.rmtree(base, ignore_errors=True)
    # the figures move with the host: say how busy it was (docs/benchmarks.md notes it)
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
