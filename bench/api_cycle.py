"""The container cycle through the API: create + start + wait + remove of ``/bin/true``.

For each graph/exec combination asked for, starts one daemon per network driver on scratch
roots (busybox imported), all at once, then runs rounds of one cycle on each daemon and one
``unshare --fork --pid --mount --uts --ipc --net chroot ROOTFS /bin/true`` (the floor), in an
order that turns each round: the host's noise (this machine is shared) falls on every series
alike. With ``--network bridge`` the daemon gets a bridge and nft table of its own (removed
afterwards), and the difference to ``none`` is printed as the network driver's share.

The client is the standard library's ``http.client`` on one keep-alive connection, the leanest
Python client there is: the figures are the daemon's. (httpx adds about 1 ms per request on
this machine, four per cycle; the Go docker CLI adds less than either.)

    .venv/bin/python bench/api_cycle.py [--cycles 50] [--graph overlay] [--exec native] [--network none]

The targets of issue 28 are ratios to that floor, measured in the same run: the cycle's median
at most 3x the floor without networking and 4.5x with the bridge, whose share (bridge - none)
is at most 6 ms. The script prints each ratio and exits 1 when one is missed (``--no-check``:
print only). ``--quick`` runs 5 cycles and checks nothing: a smoke test of the script, which
CI runs (tests/bench). ``--profile DIR`` attaches py-spy to each daemon during its cycles and
writes a flame graph per combination (``DIR/<graph>-<exec>-<network>.svg``, CPU samples; add
``--idle`` for waiting threads too, ``--profile-format raw`` for collapsed stacks, ``.txt``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import astuple
from pathlib import Path

# the one API cycle, shared with `moorage bench`
from moorage.api.cli.bench.apicycle import PHASES, WARM_UP, Cycle, cycle_daemon, one_cycle
from moorage.api.cli.harness import drivers_config
from moorage.core.sdk.errors import ConfigError
from moorage.core.sdk.mounts import unmount_below
from moorage.core.sdk.rootfs import make_busybox_rootfs, tar_directory

BRIDGE = '[network.bridge]\nname = "{name}"\ntable = "{table}"\n'
#: issue 28's targets: the cycle's median over the floor's, per network driver
RATIO_TARGETS = {"none": 3.0, "bridge": 4.5}
#: and the bridge's share of a cycle (its median less the no-network one), in ms
BRIDGE_SHARE_TARGET = 6.0


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    return f"median {statistics.median(ms):6.1f} ms   p90 {p90:6.1f} ms   min {ms[0]:6.1f} ms"


@contextlib.contextmanager
def py_spy(svg: Path | None, idle: bool, pid: int, form: str = "flamegraph") -> Iterator[None]:
    """py-spy recording ``pid`` (and its threads) into ``svg`` (a flame graph, or collapsed stacks
    with ``form`` raw) while the block runs."""
    if svg is None:
        yield
        return
    spy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if spy is None:
        raise SystemExit("--profile needs py-spy: pip install 'moorage[test]' (or py-spy)")
    argv = [spy, "record", "--pid", str(pid), "--output", str(svg), "--format", form, "--rate", "500",
            "--nonblocking", *(["--idle"] if idle else [])]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)  # py-spy attaches
    try:
        yield
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes the graph and exits
        _, err = proc.communicate(timeout=60)
        if proc.returncode not in (0, -2) or not svg.exists():
            print(f"  py-spy failed ({proc.returncode}): {err.decode(errors='replace')[-400:]}")


def daemon_config(base: Path, graph: str, exec_driver: str, network: str) -> str:
    config = drivers_config(graph, exec_driver) + f'[network]\ndriver = "{network}"\n'
    suffix = base.name[-6:].replace("-", "")
    if network == "bridge":
        config += BRIDGE.format(name=f"mbench{suffix}"[:15], table=f"moorage-bench-{suffix}")
    return config


def interleaved(base: Path, graph: str, exec_driver: str, networks: list[str], cycles: int, rootfs: Path,
                tar: Path, args: argparse.Namespace) -> tuple[list[float], dict[str, list[Cycle]]]:
    """One daemon per network driver, all running at once; then ``cycles`` rounds of one floor
    cycle and one API cycle on each daemon, in an order that turns each round, so that the
    host's noise falls on every series alike. The floor's samples, and each network's cycles."""
    floor: list[float] = []
    measured: dict[str, list[Cycle]] = {network: [] for network in networks}
    with contextlib.ExitStack() as stack:
        clients = {}
        for network in networks:
            run_dir = Path(tempfile.mkdtemp(prefix=f"{graph}-{exec_driver}-{network}-", dir=base))
            try:
                clients[network], pid = stack.enter_context(
                    cycle_daemon(run_dir, daemon_config(run_dir, graph, exec_driver, network), tar))
            except ConfigError as exc:
                raise SystemExit(f"{graph} + {exec_driver} + {network}: {exc}") from None
            suffix = "svg" if args.profile_format == "flamegraph" else "txt"
            svg = args.profile / f"{graph}-{exec_driver}-{network}.{suffix}" if args.profile else None
            stack.enter_context(py_spy(svg, args.idle, pid, args.profile_format))
        order = [None, *networks]  # None: the floor
        for n in range(WARM_UP + cycles):
            turn = n % len(order)
            for network in order[turn:] + order[:turn]:
                if network is None:
                    floor.append(unshare_cycle(rootfs))
                else:
                    cycle = one_cycle(clients[network], n)
                    if n >= WARM_UP:
                        measured[network].append(cycle)
    del floor[:WARM_UP]
    for network, cycles_of in measured.items():
        print(f"  {graph} + {exec_driver} + {network}, median per request: "
              + ", ".join(f"{phase} {statistics.median(seconds) * 1000:.1f} ms"
                          for phase, seconds in zip(PHASES, zip(*map(astuple, cycles_of), strict=True), strict=True)))
    return floor, measured


def unshare_cycle(rootfs: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot", str(rootfs),
                    "/bin/true"], check=True)
    return time.perf_counter() - t0


def check(graph: str, exec_driver: str, medians: dict[str, float], floor: float) -> list[str]:
    """Print each ratio against its target; the targets missed."""
    missed = []
    for network, median in medians.items():
        ratio, target = median / floor, RATIO_TARGETS.get(network)
        verdict = "" if target is None else f" (target {target}x: {'met' if ratio <= target else 'MISSED'})"
        print(f"  ratio {graph} + {exec_driver} + {network} to the floor: {ratio:.2f}x{verdict}")
        if target is not None and ratio > target:
            missed.append(f"{graph} + {exec_driver} + {network}: {ratio:.2f}x the floor (target {target}x)")
    if "none" in medians and "bridge" in medians:
        share = medians["bridge"] - medians["none"]
        ok = share <= BRIDGE_SHARE_TARGET
        print(f"  network driver share (bridge - none): {share:.1f} ms "
              f"(target {BRIDGE_SHARE_TARGET} ms: {'met' if ok else 'MISSED'})")
        if not ok:
            missed.append(f"{graph} + {exec_driver}: the bridge's share {share:.1f} ms "
                          f"(target {BRIDGE_SHARE_TARGET} ms)")
    return missed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cycles", type=int, default=50)
    parser.add_argument("--graph", action="append", help="graph driver(s) (default: overlay)")
    parser.add_argument("--exec", dest="exec_drivers", action="append", help="exec driver(s) (default: native)")
    parser.add_argument("--network", dest="networks", action="append", help="network driver(s) (default: none)")
    parser.add_argument("--quick", action="store_true", help="5 cycles, no check: a smoke test of the script")
    parser.add_argument("--no-check", action="store_true", help="print the ratios, do not exit 1 on a miss")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="py-spy flame graphs of the daemons into DIR")
    parser.add_argument("--idle", action="store_true", help="with --profile: sample waiting threads too")
    parser.add_argument("--profile-format", choices=["flamegraph", "raw"], default="flamegraph",
                        help="with --profile: a flame graph (SVG) or collapsed stacks (text)")
    args = parser.parse_args()
    cycles = 5 if args.quick else args.cycles
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    missed: list[str] = []
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        tar = tar_directory(rootfs, base / "busybox.tar")
        print(f"{cycles} cycles of create+start+wait+remove of /bin/true, load average "
              + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        for graph in args.graph or ["overlay"]:
            for exec_driver in args.exec_drivers or ["native"]:
                networks = args.networks or ["none"]
                floor, measured = interleaved(base, graph, exec_driver, networks, cycles, rootfs, tar, args)
                print(f"{'unshare + chroot (the floor)':40s} {figures(floor)}")
                medians = {}
                for network in networks:
                    samples = [c.total for c in measured[network]]
                    medians[network] = statistics.median(samples) * 1000
                    print(f"{'API, ' + graph + ' + ' + exec_driver + ' + ' + network:40s} {figures(samples)}")
                missed += check(graph, exec_driver, medians, statistics.median(floor) * 1000)
    finally:
        unmount_below(base)
        shutil.rmtree(base, ignore_errors=True)
    # the figures move with the host: say how busy it was (docs/benchmarks.md notes it)
    print("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    if missed and not (args.quick or args.no_check):
        raise SystemExit("targets missed:\n  " + "\n  ".join(missed))


if __name__ == "__main__":
    main()
