"""The network workload: join, leave and release of a namespace, and the API cycle."""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from pyroute2 import IPRoute

from moorage.api.cli.bench import Bench, NamedDriver, Timer, sh
from moorage.api.cli.bench.apicycle import api_cycles
from moorage.api.cli.bench.exec import UNSHARE
from moorage.api.cli.harness import config_text
from moorage.core.sdk.rootfs import make_busybox_rootfs, tar_directory


def namespace_process(stack: ExitStack) -> int:
    """A process in a network namespace of its own (what an exec driver hands over), killed by ``stack``."""
    proc = subprocess.Popen(["unshare", "--net", "sleep", "1000000"])
    stack.callback(proc.wait)
    stack.callback(proc.kill)
    own = os.stat("/proc/self/ns/net").st_ino
    deadline = time.monotonic() + 10
    while os.stat(f"/proc/{proc.pid}/ns/net").st_ino == own:
        if time.monotonic() > deadline:
            raise RuntimeError("unshare --net did not start")
        time.sleep(0.005)
    return proc.pid


def veth_into(pid: int, name: str) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer={"ifname": "eth0", "net_ns_pid": pid})


def veth_delete(name: str) -> None:
    with IPRoute() as ipr:
        ipr.link("del", index=ipr.link_lookup(ifname=name)[0])


class NetworkBench(Bench):
    """Network drivers: join, leave and release of a container's namespace, and the API cycle.

    Runs in a network namespace of its own (so a driver's bridge or rules never meet the
    host's) unless --host-network: a driver that hangs off a host NIC (macvlan) needs that, and
    drivers that make host state then need names of their own in --config. Floor: a veth pair
    into the namespace and its removal (one netlink request each); unshare + chroot for the
    API cycle.
    """

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cycles", type=int, default=30, help="join/leave/release cycles per driver (30)")
        parser.add_argument("--api-cycles", type=int, default=20, help="API cycles per driver (default 20; 0: none)")
        parser.add_argument("--host-network", action="store_true", help="run in the host's network namespace")

    def steps(self, args: argparse.Namespace) -> int:
        return 3 * args.cycles + args.api_cycles

    def prepare(self, args: argparse.Namespace, scratch: Path, stack: ExitStack) -> None:
        self.scratch, self.stack = scratch, stack
        self.rootfs = make_busybox_rootfs(scratch / "rootfs")
        self.tar = tar_directory(self.rootfs, scratch / "busybox.tar")

    def run(self, under_test: NamedDriver, root: Path, timer: Timer, args: argparse.Namespace) -> None:
        driver = under_test.create(root)
        try:
            for n in range(args.cycles + 3):
                cid = uuid.uuid4().hex * 2
                with ExitStack() as box:  # a fresh namespace per container, as the exec driver makes
                    pid = namespace_process(box)
                    if n < 3:  # warm-up
                        driver.join(cid, pid, {})
                        driver.leave(cid)
                        driver.release(cid)
                        continue
                    timer.time("join", driver.join, cid, pid, {})
                    timer.time("leave", driver.leave, cid)
                    timer.time("release", driver.release, cid)
        finally:
            driver.cleanup()
        if args.api_cycles:
            config = copy.deepcopy(under_test.config.data)
            config.setdefault("network", {})["driver"] = under_test.name
            (root / "api").mkdir()
            api_cycles(root / "api", config_text(config), self.tar, args.api_cycles,
                       lambda cycle: timer.record("API cycle", cycle.total))

    def floor(self, timer: Timer, args: argparse.Namespace) -> dict[str, str]:
        for _ in range(args.cycles):
            name = f"mbf{uuid.uuid4().hex[:8]}"
            with ExitStack() as box:
                pid = namespace_process(box)
                timer.time("join", veth_into, pid, name)
                timer.time("leave", veth_delete, name)
        for _ in range(args.api_cycles):
            timer.time("API cycle", sh, *UNSHARE, str(self.rootfs), "/bin/true")
        floors = {"join": "a veth pair with one end in the namespace (pyroute2)", "leave": "deleting it"}
        return floors | ({"API cycle": " ".join(UNSHARE) + " ROOTFS /bin/true"} if args.api_cycles else {})
