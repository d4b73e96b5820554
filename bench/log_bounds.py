"""One line of 1 GiB without a newline through a real daemon, once per exec driver: the figures
of docs/benchmarks.md ("Logs") — the time to log it, the monitor's peak RSS and the daemon's
peak growth while it replays the whole log.

It is tests/exec/test_log_bounds.py with a longer line (the suite writes 256 MiB, already more
than every bound it checks); the test's assertions hold here too, so a run that prints figures
also passed them.

    .venv/bin/python bench/log_bounds.py [--mib 1024] [--exec native,lxc]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/exec/test_log_bounds.py::test_a_long_line_without_newline"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=1024, help="the line's length in MiB (default 1024)")
    parser.add_argument("--exec", default="native,lxc", help="exec drivers, comma-separated (default native,lxc)")
    args = parser.parse_args()
    env = {**os.environ, "MOORAGE_LOG_BOUNDS_MIB": str(args.mib)}
    run = subprocess.run([sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:cacheprovider",
                          "-k", " or ".join(args.exec.split(",")), "--timeout", "1800"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    figures = [line for line in run.stdout.splitlines() if " MiB in " in line and "monitor peak RSS" in line]
    for line in figures:
        print(line.strip(". "))
    if run.returncode != 0 or not figures:
        print(run.stdout[-4000:], run.stderr[-2000:], sep="\n", file=sys.stderr)
        print(f"failed ({args.exec}): see above", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
