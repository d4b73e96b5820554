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
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from moorage.api.cli.bench.apicycle import UnixConnection  # the one lean client, shared with `moorage bench`
from moorage.core.sdk.rootfs import make_busybox_rootfs, tar_directory

CONFIG = '[graph]\ndriver = "{graph}"\n[exec]\ndriver = "{exec}"\n[network]\ndriver = "{network}"\n'
CREATE = {"Image": "busybox", "Cmd": ["/bin/true"]}
BRIDGE = '[network.bridge]\nname = "{name}"\ntable = "{table}"\n'

def unmount_below(path: Path) -> None:
    prefix = str(path.resolve())
    points = [line.split()[1] for line in open("/proc/self/mounts")]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def figures(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[int(len(ms) * 0.9) - 1] if len(ms) >= 10 else ms[-1]
    return f"median {statistics.median(ms):6.1f} ms   p90 {p90:6.1f} ms   min {ms[0]:6.1f} ms"


def api_cycles(base: Path, graph: str, exec_driver: str, network: str, cycles: int, tar: Path) -> list[float]:
    sock = base / "bench.sock"
    config = CONFIG.format(graph=graph, exec=exec_driver, network=network)
    suffix = base.name[-6:].replace("-", "")
    if network == "bridge":
        config += BRIDGE.format(name=f"mbench{suffix}"[:15], table=f"moorage-bench-{suffix}")
    (base / "daemon.toml").write_text(config)
    proc = subprocess.Popen([sys.executable, "-m", "moorage.api.cli", "daemon", "--config", str(base / "daemon.toml"),
                             "-g", str(base / "root"), "-H", f"unix://{sock}", "-p", str(base / "pid")],
                            stdout=subprocess.DEVNULL, stderr=open(base / "daemon.log", "wb"), start_new_session=True)
    try:
        client = UnixConnection(sock)
        for _ in range(300):
            try:
                if client.call("GET", "/_ping")[0] == 200:
                    break
            except OSError:
                client.close()
                if proc.poll() is not None:  # say why, not a connection error further on
                    raise SystemExit(f"the {graph} + {exec_driver} + {network} daemon exited with {proc.returncode}:\n"
                                     + (base / "daemon.log").read_text(errors="replace")[-2000:]) from None
                time.sleep(0.05)
        status, _ = client.call("POST", "/images/create?fromSrc=-&repo=busybox", body=tar.read_bytes())
        assert status == 200, status
        samples = []
        phases: dict[str, list[float]] = {"create": [], "start": [], "wait": [], "remove": []}
        for i in range(cycles + 3):
            t0 = time.perf_counter()
            status, body = client.call("POST", "/containers/create", json_body=CREATE)
            cid = json.loads(body)["Id"]
            t1 = time.perf_counter()
            answers = [status, client.call("POST", f"/containers/{cid}/start")[0]]
            t2 = time.perf_counter()
            answers.append(client.call("POST", f"/containers/{cid}/wait")[0])
            t3 = time.perf_counter()
            answers.append(client.call("DELETE", f"/containers/{cid}")[0])
            t4 = time.perf_counter()
            if answers != [201, 204, 200, 204]:
                raise SystemExit(f"cycle {i}: unexpected answers {answers}")
            if i >= 3:  # warm-up cycles are left out
                samples.append(t4 - t0)
                for name, a, b in (("create", t0, t1), ("start", t1, t2), ("wait", t2, t3), ("remove", t3, t4)):
                    phases[name].append(b - a)
        print(f"  {graph} + {exec_driver} + {network}, median per request: "
              + ", ".join(f"{name} {statistics.median(v) * 1000:.1f} ms" for name, v in phases.items()))
        return samples
    finally:
        proc.terminate()
        proc.wait(20)
        unmount_below(base)


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
