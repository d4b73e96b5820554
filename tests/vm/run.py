"""Run pytest (or any command) inside the cgroup-v2-only test VM (see ``harness``).

    .venv/bin/python tests/vm/run.py                      # the bounded part CI runs (test_vm.py)
    .venv/bin/python tests/vm/run.py tests/exec tests/api/test_containers.py   # these paths
    .venv/bin/python tests/vm/run.py --all                # everything in ALL (tens of minutes)
    .venv/bin/python tests/vm/run.py --shell 'cat /proc/self/cgroup'

Exits with the command's status (2 if the VM did not report one).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import harness  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
#: in the VM, ``--all``: the exec contract suite for both drivers and the API lifecycle tests
ALL = ["tests/exec", "tests/api/test_containers.py", "tests/api/test_restore.py", "tests/api/test_lifecycle_hooks.py"]
#: in the VM, by default and in CI: the cgroup v2 tests of the native driver, and a sample of the contract
BOUNDED = ["tests/exec/test_native_cgroups.py",
           "tests/exec/test_native.py::TestNativeContract::test_resources_in_cgroups",
           "tests/exec/test_native.py::TestNativeContract::test_pids_limit_enforced",
           "tests/exec/test_native.py::TestNativeContract::test_memory_limit_enforced",
           "tests/exec/test_native.py::TestNativeContract::test_release_leaves_nothing_and_forgets",
           "tests/exec/test_native.py::TestNativeContract::test_restore_running_container"]


def pytest_command(paths: list[str], extra: str = "") -> str:
    """The command line that runs pytest on ``paths`` from the worktree, in the VM."""
    python = REPO / ".venv" / "bin" / "python"
    return (f"cd {shlex.quote(str(REPO))} && {shlex.quote(str(python))} -m pytest -p no:cacheprovider -q "
            f"-o addopts=-ra --timeout=900 {extra} " + " ".join(shlex.quote(p) for p in paths))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--shell"]:
        command = " ".join(argv[1:])
    elif argv[:1] == ["--all"]:
        command = pytest_command(ALL, " ".join(argv[1:]))
    else:
        command = pytest_command(argv or BOUNDED)
    result = harness.run(command, timeout=4 * 3600, echo=True)
    print(f"moorage-vm: {result.seconds:.0f} s in all, status {result.status}")
    return 2 if result.status is None else result.status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
