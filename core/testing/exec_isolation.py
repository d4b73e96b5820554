"""The exec contract, part 2: isolation (namespaces, mounts) and resources (cgroup limits).

``ExecDriverContract`` (``moorage.core.testing.exec``) is all parts together."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.exec import Mount, Resources
from moorage.core.sdk.mounts import mounts_below, unified
from moorage.core.testing.exec_fixtures import (
    ExecFixtures,
    alive,
    cgroup_file,
    cgroups_named,
    log_text,
    wait_for,
)


class ExecIsolationContract(ExecFixtures):
    """The exec contract, part 2: isolation (namespaces, mounts) and resources (cgroup limits)."""

    # -- isolation -------------------------------------------------------------------------------

    def test_namespaces_and_on_namespace_runs_first(self, runner, make_spec):
        seen = {}

        def on_namespace(pid: int) -> None:
            seen["net"] = os.readlink(f"/proc/{pid}/ns/net")
            (spec.rootfs / "tmp" / "configured").write_text("by the network driver\n")

        spec = make_spec(["sh", "-c", "cat /tmp/configured; cat /sys/class/net/lo/operstate; ls /sys/class/net"])
        runner.start(spec, on_namespace)
        assert runner.driver.wait(spec.container_id, 30) == 0
        assert seen["net"] != os.readlink("/proc/self/ns/net")
        assert log_text(spec) == "by the network driver\nunknown\nlo\n"  # lo is up ("unknown") and alone

    def test_host_network_without_isolation(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "readlink /proc/1/ns/net"], isolate_network=False)
        called = []
        runner.start(spec, called.append)
        assert runner.driver.wait(spec.container_id, 30) == 0
        assert not called
        assert log_text(spec).strip() == os.readlink("/proc/self/ns/net")

    def test_failing_on_namespace_leaves_nothing(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"])
        pids = []

        def broken(pid: int) -> None:
            pids.append(pid)
            raise RuntimeError("the network driver failed")

        with pytest.raises(RuntimeError):
            runner.driver.start(spec, broken)
        wait_for(lambda: not alive(pids[0]), what="the process to be killed")
        assert not cgroups_named(spec.container_id)
        assert not mounts_below(spec.rootfs)

    def test_pid_and_mount_isolation(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'; cat /proc/mounts | wc -l"])
        assert self.run_to_exit(runner, spec) == 0
        lines = log_text(spec).split()
        assert lines[0] == "1"
        assert int(lines[1]) <= 3  # sh, ls/grep: nothing of the host
        assert not mounts_below(spec.rootfs)  # the container's mounts never showed on the host

    def test_bind_mounts_ro_and_rw(self, runner, make_spec, tmp_path):
        rw = tmp_path / "rw"
        ro = tmp_path / "ro"
        rw.mkdir()
        ro.mkdir()
        (ro / "data").write_text("read me\n")
        spec = make_spec(["sh", "-c", "cat /ro/data; echo written > /rw/out; touch /ro/nope 2>/dev/null || echo ro"],
                         mounts=[Mount(rw, "/rw"), Mount(ro, "/ro", readonly=True)])
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "read me\nro\n"
        assert (rw / "out").read_text() == "written\n"
        assert not (ro / "nope").exists()

    def test_readonly_rootfs_keeps_its_mounts_modes(self, runner, make_spec, tmp_path):
        rw = tmp_path / "rw"
        rw.mkdir()
        spec = make_spec(["sh", "-c", "touch /x 2>/dev/null || echo root-ro; touch /tmp/x 2>/dev/null || echo tmp-ro; "
                          "echo written > /new/rw/out && echo x > /dev/null && echo ok"],
                         mounts=[Mount(rw, "/new/rw")], readonly_rootfs=True, working_dir="/not/yet")
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "root-ro\ntmp-ro\nok\n"
        assert (rw / "out").read_text() == "written\n"
        assert not (spec.rootfs / "x").exists()

    def test_bind_destination_through_an_absolute_symlink_stays_in_the_rootfs(self, runner, make_spec, tmp_path):
        source = tmp_path / "shared"
        source.mkdir()
        (source / "f").write_text("here\n")
        marker = f"moorage-contract-{uuid.uuid4().hex[:8]}"
        spec = make_spec(["cat", f"/var/run/{marker}/f"], mounts=[Mount(source, f"/var/run/{marker}")])
        var_run = Path(spec.rootfs) / "var" / "run"
        if var_run.is_dir() and not var_run.is_symlink():
            var_run.rmdir()
        var_run.parent.mkdir(exist_ok=True)
        os.symlink("/run", var_run)  # as in Debian's images: resolved in the rootfs, not on the host
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "here\n"
        assert not Path("/run", marker).exists()

    # -- resources ---------------------------------------------------------------------------

    def test_resources_in_cgroups(self, runner, make_spec):
        if unified():
            pytest.skip("cgroup v1 files: exec_cgroups.ExecCgroupsContract checks the v2 ones")
        spec = make_spec(["sh", "-c", "echo ready; exec sleep 1000"],
                         resources=Resources(memory=64 << 20, memory_swap=0, cpu_shares=512, pids=64))
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        assert int(cgroup_file(pid, "memory", "memory.limit_in_bytes")) == 64 << 20
        if runner.driver.memory_limits()[1]:  # what /info reports as SwapLimit
            assert int(cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes")) == 128 << 20
        assert cgroup_file(pid, "cpu", "cpu.shares") == "512"
        assert cgroup_file(pid, "pids", "pids.max") == "64"
        allowed = cgroup_file(pid, "devices", "devices.list")
        assert "a *:* rwm" not in allowed and "c 1:3 rwm" in allowed

    def test_pids_limit_enforced(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 100 & done; echo all"],
                         resources=Resources(pids=4))
        assert self.run_to_exit(runner, spec) != 0  # busybox sh gives up when fork fails
        assert "fork" in log_text(spec, "stderr") and "all" not in log_text(spec)

    def test_memory_limit_enforced(self, runner, make_spec):
        if not runner.driver.memory_limits()[0]:
            pytest.skip(f"{runner.driver.name} reports that it cannot limit memory here")
        spec = make_spec(["sh", "-c", "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ${#x}"],
                         resources=Resources(memory=8 << 20))
        assert self.run_to_exit(runner, spec) == 137  # the OOM killer's SIGKILL
        assert log_text(spec) == ""

    def test_memory_below_minimum_is_refused(self, runner, make_spec):
        spec = make_spec(["true"], resources=Resources(memory=4096))
        with pytest.raises(InvalidParameter, match="(?i)memory"):
            runner.driver.start(spec)
        assert not cgroups_named(spec.container_id)

    def test_processes_first_process_first(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "sleep 1000 & sleep 1000 & echo ready; wait"])
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        wait_for(lambda: len(runner.driver.processes(spec.container_id)) == 3, what="three processes")
        pids = runner.driver.processes(spec.container_id)
        assert pids[0] == pid
        assert all(alive(p) for p in pids)
