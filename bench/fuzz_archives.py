"""The long run of the hostile-archive property suite (not a test): many generated archives
through every path that applies archives, printing per path the cases tried, how many the
extraction refused, and the failures (an archive that changed something outside its tree, or
failed with anything but a clear ``InvalidParameter``), with hypothesis' shrunk example.

    .venv/bin/python bench/fuzz_archives.py [--examples 2000] [--paths vfs,overlay,btrfs,context,add,add-below-symlink]

The CI suite (``tests/graph/test_hostile_archives.py``) runs the same strategy and invariant
with 40 examples per path. btrfs runs on a loop-mounted btrfs image made (and removed) by the
script. Needs root. Exits 1 if any path failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

from hypothesis import HealthCheck, given, settings

from moorage.api.cli.bench.graph import loop_btrfs
from moorage.api.cli.inventory import plugin_manager
from moorage.core.kernel.config import load
from moorage.core.sdk.driver import DriverContext
from moorage.core.testing.archives import ISSUE_CASES, LayerSink, check_hostile, hostile_archives, plant_canaries

# the builder's sinks are the builder tests' (core/testing knows drivers only)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "build"))
from hostile_sinks import AddSink, ContextSink  # noqa: E402

PATHS = ["vfs", "overlay", "btrfs", "context", "add", "add-below-symlink"]


class Tally:
    def __init__(self) -> None:
        self.tried = self.refused = 0


def check(sink, base: Path, entries, tally: Tally) -> None:
    tally.tried += 1
    tally.refused += check_hostile(sink, base, entries)


def fuzz(path: str, base: Path, examples: int) -> tuple[Tally, str | None]:
    base.mkdir(parents=True)
    plant_canaries(base / "victim")
    driver = None
    graph_drivers = plugin_manager(load(None)).families["graph"]
    if path in graph_drivers.names():
        (base / "home").mkdir()
        cls = graph_drivers.get(path)
        driver = cls(DriverContext.standalone(cls, base / "home"))
        sink = LayerSink(driver, base / "victim")
    elif path == "context":
        sink = ContextSink(base / "root")
    else:
        sink = AddSink(base / "add", "/" if path == "add" else "/link/y")
    tally = Tally()

    @settings(max_examples=examples, deadline=None, database=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(entries=hostile_archives)
    def run(entries):
        check(sink, base, entries, tally)

    failure = None
    try:
        for case in ISSUE_CASES:
            check(sink, base, case, tally)
        run()
    except Exception:
        failure = traceback.format_exc()
    finally:
        if driver is not None:
            driver.cleanup()
    return tally, failure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="generated archives per path")
    parser.add_argument("--paths", default=",".join(PATHS))
    args = parser.parse_args()
    failed = False
    print(f"{'path':<20}{'tried':>8}{'refused':>9}{'seconds':>9}  result")
    with tempfile.TemporaryDirectory(prefix="moorage-fuzz-") as tmp:
        for path in args.paths.split(","):
            base = Path(tmp) / path
            start = time.monotonic()
            with ExitStack() as stack:
                if path == "btrfs":
                    base = loop_btrfs(Path(tmp), stack) / "fuzz"
                tally, failure = fuzz(path, base, args.examples)
            result = "ok" if failure is None else "FAILED"
            print(f"{path:<20}{tally.tried:>8}{tally.refused:>9}{time.monotonic() - start:>9.1f}  {result}", flush=True)
            if failure is not None:
                failed = True
                print(failure, file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
