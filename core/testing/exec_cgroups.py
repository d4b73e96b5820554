"""The exec driver contract, continued: what a driver does through the container's cgroups,
on cgroup v1 and v2 hosts alike: pause and unpause, stats, the device allow-list seen from
inside the container, kill reaching every process, and (on a cgroup v2 host) the v2 limit files.

A driver package runs it as it runs ``ExecDriverContract`` (same ``moorage_driver`` fixture,
see ``moorage.core.testing.plugin``)::

    from moorage.core.testing.exec_cgroups import ExecCgroupsContract

    class TestMyDriverCgroups(ExecCgroupsContract):
        pass

Pause tests are skipped for a driver whose ``pause`` raises ``NotSupported``, stats tests for a
driver that keeps the default ``stats`` (all figures 0).
"""

from __future__ import annotations

import os
import signal
import stat
import time
from pathlib import Path

import pytest

from moorage.core.sdk.errors import NotFound, NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import ExecDriver, Resources
from moorage.core.sdk.mounts import CGROUP_ROOT, unified
from moorage.core.testing.exec_fixtures import ExecFixtures, alive, log_text, wait_for

COUNTER = ["sh", "-c", "i=0; echo ready; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.02; done"]


def v2_cgroup(pid: int) -> Path:
    """The cgroup v2 directory process ``pid`` is in."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            if line.startswith("0::"):
                return CGROUP_ROOT / line[3:].strip().lstrip("/")
    raise AssertionError(f"process {pid} is in no cgroup v2 hierarchy")


def counter(spec) -> int:
    try:
        return int((Path(spec.rootfs) / "tmp" / "count").read_text() or 0)
    except (FileNotFoundError, ValueError):
        return 0


class ExecCgroupsContract(ExecFixtures):
    """Tests every exec driver passes on cgroup v1 and v2 hosts."""

    def run_to_exit(self, runner, spec, timeout: float = 60) -> int | None:
        runner.start(spec)
        return runner.driver.wait(spec.container_id, timeout)

    def started(self, runner, make_spec, args, **fields):
        spec = make_spec(args, **fields)
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), timeout=30, what="the container")
        return spec, pid

    # -- pause, unpause ----------------------------------------------------------------------

    def pause_or_skip(self, driver: ExecDriver, container_id: str) -> None:
        try:
            driver.pause(container_id)
        except NotSupported as exc:
            pytest.skip(f"{driver.name} cannot pause here: {exc}")

    def test_pause_freezes_and_unpause_thaws(self, runner, make_spec):
        spec, _ = self.started(runner, make_spec, COUNTER)
        driver = runner.driver
        wait_for(lambda: counter(spec) > 0, what="the counter")
        self.pause_or_skip(driver, spec.container_id)
        driver.pause(spec.container_id)  # pausing a paused container is not an error
        frozen = counter(spec)
        time.sleep(0.5)
        assert counter(spec) == frozen, "the container kept running while paused"
        if unified():
            assert (v2_cgroup(driver.processes(spec.container_id)[0]) / "cgroup.freeze").read_text().strip() == "1"
        driver.unpause(spec.container_id)
        driver.unpause(spec.container_id)  # thawing a thawed container is not an error
        wait_for(lambda: counter(spec) > frozen + 2, what="the counter to move again after unpause")

    def test_paused_container_is_killed_and_released(self, runner, make_spec):
        spec, pid = self.started(runner, make_spec, ["sh", "-c", "sleep 1000 & echo ready; wait"])
        pids = runner.driver.processes(spec.container_id)
        self.pause_or_skip(runner.driver, spec.container_id)
        runner.driver.release(spec.container_id)  # kills the frozen processes too
        for each in pids:
            assert not alive(each), f"process {each} of a paused container survived release"

    def test_pause_of_an_exited_or_unknown_container(self, runner, make_spec):
        spec = make_spec(["true"])
        assert self.run_to_exit(runner, spec) == 0
        try:
            with pytest.raises(StateError):
                runner.driver.pause(spec.container_id)
        except NotSupported as exc:
            pytest.skip(f"{runner.driver.name} cannot pause here: {exc}")
        with pytest.raises(StateError):
            runner.driver.unpause(spec.container_id)
        with pytest.raises(NotFound):
            runner.driver.pause("0" * 64)

    # -- stats -------------------------------------------------------------------------------

    def stats_or_skip(self, driver: ExecDriver) -> None:
        if type(driver).stats is ExecDriver.stats:
            pytest.skip(f"{driver.name} does not report stats")

    def test_stats_of_a_running_container(self, runner, make_spec):
        self.stats_or_skip(runner.driver)
        busy = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; x=$(head -c 3000000 /dev/zero | tr '\\0' a)"
        spec, _ = self.started(runner, make_spec, ["sh", "-c", f"{busy}; sleep 1000 & echo ready; wait"],
                               resources=Resources(memory=64 << 20, pids=32))
        usage = runner.driver.stats(spec.container_id)
        assert usage.pids == len(runner.driver.processes(spec.container_id)) == 2
        assert usage.pids_limit == 32
        assert usage.memory_limit == 64 << 20
        assert 0 < usage.memory_usage < 64 << 20
        assert usage.cpu_total_ns >= 10_000_000  # the loop took tens of milliseconds at least
        assert usage.cpu_total_ns == usage.cpu_user_ns + usage.cpu_system_ns or unified()

    def test_stats_without_limits_and_after_exit(self, runner, make_spec):
        self.stats_or_skip(runner.driver)
        spec, _ = self.started(runner, make_spec, ["sh", "-c", "echo ready; exec sleep 1000"])
        usage = runner.driver.stats(spec.container_id)
        assert usage.memory_limit == 0 and usage.pids_limit == 0 and usage.pids == 1
        runner.driver.signal(spec.container_id, signal.SIGKILL)
        assert runner.driver.wait(spec.container_id, 30) == 137
        with pytest.raises(StateError):
            runner.driver.stats(spec.container_id)

    # -- devices, kill -----------------------------------------------------------------------

    def test_device_outside_the_allow_list_cannot_be_opened(self, runner, make_spec):
        """A node of a device outside the allow-list (kmsg, c 1:11) in the image: an unprivileged
        container's root cannot open it (the devices controller, or the eBPF filter on v2); a
        privileged one can, and may also mknod it. Both refusals are EPERM."""
        script = ("(: > /tmp/kmsg) && echo kmsg || echo refused; "
                  "(: > /tmp/null) && echo null; mknod /tmp/k2 c 1 11 && (: > /tmp/k2) && echo made "
                  "|| echo no-mknod")
        outputs, errors = {}, {}
        for privileged in (False, True):
            spec = make_spec(["sh", "-c", script], privileged=privileged)
            for name, minor in (("kmsg", 11), ("null", 3)):
                os.mknod(Path(spec.rootfs) / "tmp" / name, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
            assert self.run_to_exit(runner, spec) == 0
            outputs[privileged], errors[privileged] = log_text(spec), log_text(spec, "stderr")
        assert outputs[False] == "refused\nnull\nno-mknod\n"
        refusals = errors[False].splitlines()
        assert len(refusals) == 2 and all(line.endswith("Operation not permitted") for line in refusals), errors[False]
        assert outputs[True] == "kmsg\nnull\nmade\n" and errors[True] == ""

    def test_kill_reaches_every_process(self, runner, make_spec):
        spec, pid = self.started(runner, make_spec,
                                 ["sh", "-c", "sleep 1000 & (trap '' TERM; sleep 1000) & (sh -c 'sleep 1000 &') ; "
                                              "echo ready; wait"])
        wait_for(lambda: len(runner.driver.processes(spec.container_id)) >= 4, what="every process")
        pids = runner.driver.processes(spec.container_id)
        runner.driver.signal(spec.container_id, signal.SIGKILL)
        assert runner.driver.wait(spec.container_id, 30) == 137
        wait_for(lambda: not any(alive(p) for p in pids), what="every process to die")
        assert runner.driver.processes(spec.container_id) == []

    # -- cgroup v2 files ---------------------------------------------------------------------

    def test_v2_limits_in_the_containers_cgroup(self, runner, make_spec):
        if not unified():
            pytest.skip("a cgroup v2 host (the test VM: tests/vm)")
        spec, pid = self.started(runner, make_spec, ["sh", "-c", "echo ready; exec sleep 1000"],
                                 resources=Resources(memory=64 << 20, memory_swap=96 << 20, cpu_shares=512, pids=64))
        cgroup = v2_cgroup(pid)
        assert spec.container_id in str(cgroup)
        assert int((cgroup / "memory.max").read_text()) == 64 << 20
        if (cgroup / "memory.swap.max").exists() and runner.driver.memory_limits()[1]:
            assert int((cgroup / "memory.swap.max").read_text()) == 32 << 20  # swap alone
        assert (cgroup / "cpu.weight").read_text().strip() == "59"  # 512 shares, as runc and crun convert
        assert (cgroup / "pids.max").read_text().strip() == "64"
        unlimited = make_spec(["sh", "-c", "echo ready; exec sleep 1000"])
        default_pid = runner.start(unlimited)
        wait_for(lambda: "ready" in log_text(unlimited), what="the container")
        default = v2_cgroup(default_pid)
        assert (default / "memory.max").read_text().strip() == "max"
        assert (default / "cpu.weight").read_text().strip() == "100"
        assert (default / "pids.max").read_text().strip() == "max"
