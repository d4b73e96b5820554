"""``moorage bench graph|exec|network``: the same workload on several drivers of one family.

Each driver is built by name, as the daemon builds it (``DriverFamily.create``, options from
``--config``), so a third-party driver is measured exactly like a built-in one. Each run shows
a progress bar per driver, then a table of medians and p90 per operation beside a *floor*
(each median with its ratio to the floor's, where the floor has the operation): the same work
done by the plainest host tool (``unshare`` + ``chroot`` for a container cycle, ``tar`` for an
import). ``--json`` writes every sample; ``--plot`` draws their distributions
(matplotlib, the ``moorage[plot]`` extra). Needs root.
"""

from __future__ import annotations

import abc
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pyroute2 import IPRoute

from moorage.api.cli.inventory import plugin_manager
from moorage.core.kernel.config import DaemonConfig, load
from moorage.core.kernel.plugins import build_driver
from moorage.core.sdk.driver import Driver, DriverFamily
from moorage.core.sdk.mounts import unmount_below

FLOOR = "floor"
ISOLATED_ENV = "MOORAGE_BENCH_ISOLATED"


@dataclass
class Series:
    """The samples (milliseconds) of one operation on one driver (or on the floor)."""

    driver: str
    operation: str
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, -(-len(ordered) * 9 // 10) - 1)]  # nearest rank

    def as_json(self) -> dict:
        return {"driver": self.driver, "operation": self.operation, "unit": "ms", "n": len(self.samples),
                "median": round(self.median, 3), "p90": round(self.p90, 3),
                "samples": [round(s, 3) for s in self.samples]}


@dataclass
class Report:
    family: str
    drivers: list[str]
    series: list[Series] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    floors: dict[str, str] = field(default_factory=dict)  # operation -> what the floor ran
    settings: dict = field(default_factory=dict)

    def operations(self) -> list[str]:
        return list(dict.fromkeys(s.operation for s in self.series))

    def get(self, driver: str, operation: str) -> Series | None:
        return next((s for s in self.series if s.driver == driver and s.operation == operation), None)

    def as_json(self) -> dict:
        return {"family": self.family, "drivers": self.drivers, "skipped": self.skipped, "floors": self.floors,
                "settings": self.settings, "host": {"kernel": platform.release(), "cpus": os.cpu_count(),
                                                    "load": os.getloadavg()[0], "time": time.strftime("%FT%TZ",
                                                                                                      time.gmtime())},
                "results": [s.as_json() for s in self.series]}


@dataclass(frozen=True)
class NamedDriver:
    """Driver ``name`` of ``family``, built on a root as the daemon builds it, with the options
    ``config`` gives it."""

    family: str
    name: str
    config: DaemonConfig
    registered: DriverFamily

    def create(self, root: Path) -> Driver:
        return build_driver(self.registered, self.config, self.name, root)


class Timer:
    """Records samples into a report and advances a driver's progress bar."""

    def __init__(self, report: Report, driver: str, advance: Callable[[], None]) -> None:
        self.report, self.driver, self.advance = report, driver, advance

    def series(self, operation: str) -> Series:
        found = self.report.get(self.driver, operation)
        if found is None:
            found = Series(self.driver, operation)
            self.report.series.append(found)
        return found

    def time(self, operation: str, fn: Callable[..., object], *args: object) -> object:
        start = time.perf_counter()
        result = fn(*args)
        self.record(operation, time.perf_counter() - start)
        return result

    def record(self, operation: str, seconds: float) -> None:
        self.series(operation).samples.append(seconds * 1000)
        self.advance()


def sh(*argv: str) -> None:
    """Run a host command (a floor's operation); it must succeed."""
    subprocess.run(argv, check=True)


class Bench(abc.ABC):
    """What each family's workload provides."""

    @classmethod
    @abc.abstractmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """The workload's own flags (sizes, counts)."""

    @abc.abstractmethod
    def steps(self, args: argparse.Namespace) -> int:
        """Samples taken per driver (the length of its progress bar)."""

    @abc.abstractmethod
    def prepare(self, args: argparse.Namespace, scratch: Path, stack: ExitStack) -> None:
        """Make what every driver's run shares (an image, a rootfs) below ``scratch``; undo with ``stack``."""

    @abc.abstractmethod
    def run(self, under_test: NamedDriver, root: Path, timer: Timer, args: argparse.Namespace) -> None:
        """Build the driver on daemon root ``root`` and time the workload; NotSupported skips it."""

    @abc.abstractmethod
    def floor(self, timer: Timer, args: argparse.Namespace) -> dict[str, str]:
        """Time the floor's operations; returns operation -> what ran."""


def workloads() -> dict[str, type[Bench]]:
    from moorage.api.cli.bench.exec import ExecBench
    from moorage.api.cli.bench.graph import GraphBench
    from moorage.api.cli.bench.network import NetworkBench

    return {"graph": GraphBench, "exec": ExecBench, "network": NetworkBench}


def run_bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from moorage.core.sdk.errors import ConfigError, NotSupported

    if os.geteuid() != 0:
        raise SystemExit("moorage bench needs root (it mounts, makes namespaces and cgroups)")
    if not os.environ.get(ISOLATED_ENV):
        # again, in a mount namespace of its own (every mount goes with it) and, unless asked
        # otherwise, a network namespace of its own (no bridge or rule meets the host's)
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if not vars(args).get("host_network"):
            unshare.append("--net")
        argv = [*unshare, sys.executable, "-m", "moorage.api.cli", *sys.argv[1:]]
        return subprocess.run(argv, env={**os.environ, ISOLATED_ENV: "1"}).returncode
    if not vars(args).get("host_network"):
        with IPRoute() as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
    config: DaemonConfig = load(args.config, required=args.config is not None) if args.config else load(None)
    registered = plugin_manager(config).families[args.family]
    names = args.drivers.split(",") if args.drivers else [c.name for c in registered.by_priority()]
    for name in names:
        registered.get(name)  # an unknown name: NotFound listing the registered ones
    bench = workloads()[args.family]()
    report = Report(args.family, names, settings={k: v for k, v in vars(args).items()
                                                  if k not in ("command", "family", "json", "plot", "config")})
    console = Console(stderr=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"moorage-bench-{args.family}-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, scratch, True)
        stack.callback(unmount_below, scratch)
        bench.prepare(args, scratch, stack)
        with Progress(TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("{task.fields[note]}"), console=console) as progress:
            for name in [*names, FLOOR]:
                task = progress.add_task(name, total=bench.steps(args), note="")
                timer = Timer(report, name, lambda task=task: progress.advance(task))
                if name == FLOOR:
                    report.floors = bench.floor(timer, args)
                    progress.update(task, completed=bench.steps(args))
                    continue
                under_test = NamedDriver(args.family, name, config, registered)
                root = scratch / name
                try:
                    bench.run(under_test, root, timer, args)
                except (NotSupported, ConfigError) as exc:
                    report.skipped[name] = exc.message
                    report.series = [s for s in report.series if s.driver != name]
                    progress.update(task, note="skipped (reason below)")
                finally:
                    unmount_below(root)
                    shutil.rmtree(root, ignore_errors=True)
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=1) + "\n")
    if args.plot:
        plot(report, Path(args.plot))
    return 0


def print_table(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    measured = [d for d in report.drivers if d not in report.skipped]
    table = Table(title=f"moorage bench {report.family}: median / p90, ms (the median's ratio to the floor's)",
                  title_justify="left")
    table.add_column("operation")
    for driver in [*measured, FLOOR]:
        table.add_column(driver, justify="right")
    for operation in report.operations():
        cells = []
        floor = report.get(FLOOR, operation)
        for driver in [*measured, FLOOR]:
            s = report.get(driver, operation)
            ratio = f" ({s.median / floor.median:.1f}x)" if s and floor and driver != FLOOR and floor.median else ""
            cells.append(f"{s.median:.1f} / {s.p90:.1f}{ratio}" if s else "-")
        table.add_row(operation, *cells)
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    for operation, what in report.floors.items():
        console.print(f"floor of {operation}: {what}")
    for driver, reason in report.skipped.items():
        console.print(f"skipped {driver}: {reason}")


def plot(report: Report, path: Path) -> None:
    """One panel per operation: each driver's distribution (a box with its samples)."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install 'moorage[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    operations = report.operations()
    fig, axes = plt.subplots(1, len(operations), figsize=(3.2 * len(operations), 3.6), squeeze=False)
    for ax, operation in zip(axes[0], operations, strict=True):
        series = [s for d in [*report.drivers, FLOOR] if (s := report.get(d, operation))]
        ax.boxplot([s.samples for s in series], showfliers=True)
        ax.set_xticks(range(1, len(series) + 1), [s.driver for s in series], rotation=30)
        ax.set_title(operation, fontsize=9)
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
    fig.suptitle(f"moorage bench {report.family}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="compare the drivers of one family on the same workload",
                       description=__doc__.split("\n\n")[0])
    families = p.add_subparsers(dest="family", required=True)
    for family, cls in workloads().items():
        f = families.add_parser(family, help=cls.__doc__.splitlines()[0], description=cls.__doc__)
        f.add_argument("--drivers", help="comma-separated driver names (default: every registered one)")
        f.add_argument("--config", type=Path, help="daemon config file giving the drivers' options")
        f.add_argument("--json", metavar="FILE", help="write every sample as JSON")
        f.add_argument("--plot", metavar="FILE.png|svg", help="draw the distributions (needs moorage[plot])")
        cls.add_arguments(f)


COMMANDS = {"bench": run_bench}
