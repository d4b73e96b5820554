"""The bounded part of the cgroup v2 tests that CI runs: ``harness.BOUNDED`` in the
cgroup-v2-only VM (Debian's kernel under qemu TCG). ``tests/vm/run.py --all`` runs the rest."""

from __future__ import annotations

import os
import re

import harness
import pytest

#: must have run and passed in the VM: a skip there (say, a host that is not v2) fails this test
MUST_PASS = ("test_v2_limits_in_the_containers_cgroup", "test_pause_freezes_and_unpause_thaws",
             "test_device_outside_the_allow_list_cannot_be_opened", "test_kill_reaches_every_process",
             "test_stats_of_a_running_container", "test_daemon_moves_itself_into_a_leaf")


@pytest.mark.skipif(os.geteuid() != 0, reason="the native exec driver needs root (in the VM too)")
@pytest.mark.skipif(harness.unavailable() is not None, reason=harness.unavailable() or "")
@pytest.mark.timeout(1800)
def test_cgroup_v2_tests_pass_in_the_vm():
    result = harness.run(harness.pytest_command(harness.BOUNDED), timeout=1500)
    tail = result.output[-8000:]
    assert "cgroup2: " in result.output and "memory" in result.output.split("cgroup2: ", 1)[1].split("\n")[0], tail
    assert result.status == 0, tail
    passed = set(re.findall(r"^PASSED \S+::(\w+)", result.output, re.M))
    for name in MUST_PASS:
        assert any(p.startswith(name) for p in passed), f"{name} did not pass in the VM:\n{tail}"
