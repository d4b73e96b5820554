"""Run pytest (or any command) inside the cgroup-v2-only test VM (see ``harness``).

    .venv/bin/python tests/vm/run.py                      # the bounded part CI runs (test_vm.py)
    .venv/bin/python tests/vm/run.py tests/exec tests/api/test_containers.py   # these paths
    .venv/bin/python tests/vm/run.py --all                # ALL, then the systemd case (an hour or more)
    .venv/bin/python tests/vm/run.py --systemd            # the systemd case alone (systemd as pid 1)
    .venv/bin/python tests/vm/run.py --shell 'cat /proc/self/cgroup'
    .venv/bin/python tests/vm/run.py --cgroup-v1 --shell '.venv/bin/python bench/cycle.py'   # v1 in the same kernel

Exits with the command's status (2 if the VM did not report one); ``--all`` with the first
non-zero status of its two boots.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import harness  # noqa: E402


def boot(command: str, cgroup: int = 2, systemd: bool = False) -> int:
    result = harness.run(command, timeout=4 * 3600, echo=True, cgroup=cgroup, systemd=systemd)
    print(f"moorage-vm: {result.seconds:.0f} s in all, status {result.status}")
    return 2 if result.status is None else result.status


def main(argv: list[str]) -> int:
    cgroup = 2
    if argv[:1] == ["--cgroup-v1"]:
        cgroup, argv = 1, argv[1:]
    if argv[:1] == ["--shell"]:
        return boot(f"cd {harness.REPO} && " + " ".join(argv[1:]), cgroup)
    if argv[:1] == ["--systemd"]:
        return boot(harness.pytest_command(harness.SYSTEMD, " ".join(argv[1:])), systemd=True)
    if argv[:1] == ["--all"]:
        extra = " ".join(argv[1:])
        first = boot(harness.pytest_command(harness.ALL, extra), cgroup)
        second = boot(harness.pytest_command(harness.SYSTEMD, extra), systemd=True)
        return first or second
    return boot(harness.pytest_command(argv or harness.BOUNDED), cgroup)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
