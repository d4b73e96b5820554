"""The bounded part of the cgroup v2 tests that CI runs: ``harness.BOUNDED`` in the
cgroup-v2-only VM (Debian's kernel under qemu TCG), for both exec drivers.
``tests/vm/run.py --all`` runs the rest."""

from __future__ import annotations

import os

import harness
import pytest


@pytest.mark.skipif(os.geteuid() != 0, reason="the exec drivers need root (in the VM too)")
@pytest.mark.skipif(harness.unavailable() is not None, reason=harness.unavailable() or "")
@pytest.mark.timeout(1800)
def test_cgroup_v2_tests_pass_in_the_vm():
    result = harness.run(harness.pytest_command(harness.BOUNDED), timeout=1500)
    tail = result.output[-8000:]
    assert "cgroup2: " in result.output and "memory" in result.output.split("cgroup2: ", 1)[1].split("\n")[0], tail
    assert result.status == 0, tail
    passed = harness.passed(result.output)
    missing = [f"{cls}::{name}" for cls, name in harness.must_pass() if (cls, name) not in passed]
    assert not missing, f"did not pass in the VM (a skip counts as a failure here): {missing}\n{tail}"


def test_must_pass_names_tests_of_both_drivers_that_exist():
    """The names the VM test insists on are real tests of both drivers' classes (a renamed test
    would otherwise make the check above fail for the wrong reason, or, worse, pass)."""
    from moorage.core.testing.exec import ExecDriverContract
    from moorage.core.testing.exec_cgroups import ExecCgroupsContract

    pairs = harness.must_pass()
    assert {cls for cls, _ in pairs} == {c for classes in harness.DRIVER_CLASSES.values() for c in classes[:2]}
    for cls, name in pairs:
        base = ExecCgroupsContract if "Cgroups" in cls else ExecDriverContract
        assert callable(getattr(base, name, None)), f"{cls}::{name} is no contract test"
    sample = "PASSED tests/exec/test_lxc_cgroups.py::TestLxcCgroupsContract::test_kill_reaches_every_process\n"
    assert harness.passed(sample) == {("TestLxcCgroupsContract", "test_kill_reaches_every_process")}


def test_all_runs_every_exec_test_module_but_the_log_bound():
    """``--all`` names tests/exec's modules one by one (lxc's first): a new module joins it."""
    exec_dir = harness.REPO / "tests" / "exec"
    modules = {f"tests/exec/{p.name}" for p in exec_dir.glob("test_*.py")} - {"tests/exec/test_log_bounds.py"}
    assert modules <= set(harness.ALL)
