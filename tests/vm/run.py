"""Run pytest (or any command) inside the cgroup-v2-only test VM (see ``harness``).

    .venv/bin/python tests/vm/run.py                      # the bounded part CI runs (test_vm.py)
    .venv/bin/python tests/vm/run.py tests/exec tests/api/test_containers.py   # these paths
    .venv/bin/python tests/vm/run.py --all                # everything in ALL (tens of minutes)
    .venv/bin/python tests/vm/run.py --shell 'cat /proc/self/cgroup'
    .venv/bin/python tests/vm/run.py --cgroup-v1 --shell '.venv/bin/python bench/cycle.py'   # v1 in the same kernel

Exits with the command's status (2 if the VM did not report one).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import harness  # noqa: E402


def main(argv: list[str]) -> int:
    cgroup = 2
    if argv[:1] == ["--cgroup-v1"]:
        cgroup, argv = 1, argv[1:]
    if argv[:1] == ["--shell"]:
        command = f"cd {harness.REPO} && " + " ".join(argv[1:])
    elif argv[:1] == ["--all"]:
        command = harness.pytest_command(harness.ALL, " ".join(argv[1:]))
    else:
        command = harness.pytest_command(argv or harness.BOUNDED)
    result = harness.run(command, timeout=4 * 3600, echo=True, cgroup=cgroup)
    print(f"moorage-vm: {result.seconds:.0f} s in all, status {result.status}")
    return 2 if result.status is None else result.status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
