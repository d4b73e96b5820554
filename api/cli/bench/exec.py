"""The exec workload: start, wait and release of ``/bin/true``, and the API cycle."""

from __future__ import annotations

import argparse
import copy
import shutil
import uuid
from contextlib import ExitStack
from pathlib import Path

from moorage.api.cli.bench import Bench, NamedDriver, Timer, sh
from moorage.api.cli.bench.apicycle import api_cycles
from moorage.api.cli.harness import config_text
from moorage.core.sdk.hookspecs.exec import ProcessSpec
from moorage.core.sdk.rootfs import make_busybox_rootfs, tar_directory

ENV = ["HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=bench"]
UNSHARE = ("unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot")


def cycle(driver, rootfs: Path, base: Path, timer: Timer | None, isolate_network: bool = True) -> None:
    """One start + wait + release of ``/bin/true``, each phase timed (``timer`` None: a warm-up)."""
    cid = uuid.uuid4().hex * 2
    state_dir = base / "containers" / cid
    state_dir.mkdir(parents=True)
    spec = ProcessSpec(container_id=cid, rootfs=rootfs, args=["/bin/true"], env=ENV, hostname="bench",
                       state_dir=state_dir, log_path=state_dir / f"{cid}-json.log", isolate_network=isolate_network)
    phases = []
    for phase, call in (("start", lambda: driver.start(spec, None)), ("wait", lambda: driver.wait(cid)),
                        ("release", lambda: driver.release(cid))):
        result = timer.time(phase, call) if timer else call()
        phases.append(result)
    if phases[1] != 0:
        raise RuntimeError(f"/bin/true exited with {phases[1]}")
    if timer:
        total = sum(timer.series(p).samples[-1] for p in ("start", "wait", "release"))
        timer.series("start+wait+release").samples.append(total)
    shutil.rmtree(state_dir)


class ExecBench(Bench):
    """Exec drivers: start, wait and release of /bin/true in a busybox rootfs, and the API cycle.

    The API cycle (create + start + wait + remove through a daemon on a scratch root, network
    driver none unless --config names one) runs per exec driver. Floor: unshare + chroot.
    """

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cycles", type=int, default=30, help="driver cycles per driver (default 30)")
        parser.add_argument("--api-cycles", type=int, default=20, help="API cycles per driver (default 20; 0: none)")

    def steps(self, args: argparse.Namespace) -> int:
        return 3 * args.cycles + args.api_cycles

    def prepare(self, args: argparse.Namespace, scratch: Path, stack: ExitStack) -> None:
        self.scratch = scratch
        self.rootfs = make_busybox_rootfs(scratch / "rootfs")
        self.tar = tar_directory(self.rootfs, scratch / "busybox.tar")

    def run(self, under_test: NamedDriver, root: Path, timer: Timer, args: argparse.Namespace) -> None:
        driver = under_test.create(root)
        try:
            for _ in range(3):
                cycle(driver, self.rootfs, root, None)
            for _ in range(args.cycles):
                cycle(driver, self.rootfs, root, timer)
        finally:
            driver.cleanup()
        if args.api_cycles:
            config = copy.deepcopy(under_test.config.data)
            config.setdefault("exec", {})["driver"] = under_test.name
            network = config.setdefault("network", {})
            network["driver"] = network.get("driver") or "none"
            (root / "api").mkdir()
            api_cycles(root / "api", config_text(config), self.tar, args.api_cycles,
                       lambda cycle: timer.record("API cycle", cycle.total))

    def floor(self, timer: Timer, args: argparse.Namespace) -> dict[str, str]:
        for _ in range(args.cycles):
            timer.time("start+wait+release", sh, *UNSHARE, str(self.rootfs), "/bin/true")
        for _ in range(args.api_cycles):
            timer.time("API cycle", sh, *UNSHARE, str(self.rootfs), "/bin/true")
        floors = {"start+wait+release": " ".join(UNSHARE) + " ROOTFS /bin/true"}
        return floors | ({"API cycle": "the same unshare + chroot"} if args.api_cycles else {})
