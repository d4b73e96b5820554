"""The exec contract suite run against the native driver, plus what only the native driver does."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys

import pytest

from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.errors import DriverError, InvalidParameter
from moorage.core.sdk.hookspecs.exec import Mount, Resources, Stream
from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.exec import ExecDriverContract, ExecFixtures, alive, log_text, wait_for
from moorage.drivers.exec.common import protocol
from moorage.drivers.exec.native.cgroups import CGROUP_ROOT, V1Cgroups, probe
from moorage.drivers.exec.native.driver import NativeDriver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native exec driver needs root")


@pytest.fixture
def moorage_driver() -> DriverUnderTest:
    """The contract's driver: native, built by name as the daemon builds it."""
    return DriverUnderTest.from_toml("exec", "native")


class TestNativeContract(ExecDriverContract):
    """The whole exec contract."""

def test_registered_through_the_entry_point():
    (ep,) = [e for e in importlib.metadata.entry_points(group="moorage") if e.name == "native"]
    pm = PluginManager()
    pm.register(ep.load(), name=ep.name)  # only this plugin: the others are not under test here
    pm.collect_drivers()
    assert pm.families["exec"].get("native") is NativeDriver


class TestNativeSpecifics(ExecFixtures):
    @pytest.fixture
    def v1(self, runner):
        if runner.driver.cgroups.version != 1:
            pytest.skip("the cgroup v1 layout (tests/exec/test_native_cgroups.py covers v2)")

    def test_cgroup_layout_and_removal(self, runner, make_spec, v1):
        spec = make_spec(["sleep", "1000"], resources=Resources(memory=32 << 20, memory_swap=-1, cpu_shares=100))
        runner.start(spec)
        paths = V1Cgroups(spec.container_id).paths
        for controller, path in paths.items():
            assert path == CGROUP_ROOT / controller / "moorage" / spec.container_id
            assert path.is_dir()
        memsw = paths["memory"] / "memory.memsw.limit_in_bytes"
        if memsw.exists():  # -1: swap unlimited
            assert int(memsw.read_text()) > 1 << 60
        runner.driver.signal(spec.container_id, signal.SIGKILL)
        runner.driver.wait(spec.container_id, 30)
        runner.driver.release(spec.container_id)
        assert not any(p.exists() for p in paths.values())

    def test_no_memory_or_cpu_cgroup_without_limits(self, runner, make_spec, v1):
        spec = make_spec(["sleep", "1000"])
        runner.start(spec)
        paths = V1Cgroups(spec.container_id).paths
        assert {c for c, p in paths.items() if p.is_dir()} == {"devices", "pids", "freezer"}

    def test_release_of_a_running_container_kills_it(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "trap '' TERM; sleep 1000 & echo ready; wait"])
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        runner.driver.release(spec.container_id)
        assert not alive(pid)
        assert not probe().container(spec.container_id).exists()

    def test_the_network_turn_runs_beside_the_setup_whose_failure_is_the_starts_error(self, runner, make_spec,
                                                                                       tmp_path):
        """The monitor hands the network driver the pid as soon as the clone returns; a setup
        that fails meanwhile (a bind mount below a file) is what the start reports, not the
        network driver's failure in a namespace that went with the process."""
        source = tmp_path / "source"
        source.mkdir()
        spec = make_spec(["true"], mounts=[Mount(source, "/afile/below")])
        (spec.rootfs / "afile").write_text("a file, not a directory\n")
        turns = []

        def join(pid: int) -> None:
            turns.append(pid)
            wait_for(lambda: not alive(pid), what="the failed setup's process to be gone")
            raise DriverError(f"process {pid} does not exist: cannot join its network namespace")

        with pytest.raises(DriverError, match="afile") as failed:
            runner.driver.start(spec, join)
        assert turns, "the network driver's turn came before the setup's end"
        assert "cannot join" not in str(failed.value)
        assert not probe().container(spec.container_id).exists()

    def test_memory_swap_below_memory_is_refused(self, runner, make_spec):
        spec = make_spec(["true"], resources=Resources(memory=64 << 20, memory_swap=32 << 20))
        with pytest.raises(InvalidParameter):
            runner.driver.start(spec)
        assert not probe().container(spec.container_id).exists()

    def test_monitor_survives_bad_clients(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "while read x; do echo got $x; done"], open_stdin=True)
        runner.start(spec)
        exec_dir = spec.state_dir / "exec"
        for junk in (protocol.frame(protocol.RESIZE, b"x"), protocol.frame(200, b"??"), b"\xff" * 3):
            sock = protocol.connect(exec_dir)
            sock.sendall(protocol.frame(protocol.ATTACH) + junk)
            sock.close()
        slow = protocol.connect(exec_dir)  # attached, never reads
        slow.sendall(protocol.frame(protocol.ATTACH))
        attachment = runner.driver.attach(spec.container_id)
        attachment.write(b"x\n")
        assert attachment.read() == (Stream.STDOUT, b"got x\n")
        attachment.close_stdin()
        assert attachment.read() is None
        assert runner.driver.wait(spec.container_id, 30) == 0
        slow.close()

    def test_monitor_survives_the_zygote(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "read x; echo $x"], open_stdin=True)
        runner.start(spec)
        zygote = runner.driver._zygote
        runner.driver.cleanup()
        assert zygote is not None and zygote.poll() is not None
        attachment = runner.driver.attach(spec.container_id)
        attachment.write(b"still here\n")
        assert attachment.read()[1] == b"still here\n"
        assert runner.driver.wait(spec.container_id, 30) == 0
        again = make_spec(["true"])  # a new zygote starts on demand
        runner.start(again)
        assert runner.driver.wait(again.container_id, 30) == 0


DAEMON_SCRIPT = """
import sys, time
from pathlib import Path
from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.hookspecs.exec import ProcessSpec
from moorage.drivers.exec.native.driver import NativeDriver

home, rootfs, state_dir, cid = map(Path, sys.argv[1:5])
driver = NativeDriver(DriverContext.standalone(NativeDriver, home))
spec = ProcessSpec(container_id=str(cid), rootfs=rootfs, args=["sh", "-c", sys.argv[5]], env=["PATH=/bin"],
                   hostname="survivor", state_dir=state_dir, log_path=state_dir / "log.json", open_stdin=True)
print(driver.start(spec), driver._zygote.pid, flush=True)
time.sleep(1000)
"""


def start_and_kill_daemon(runner, spec, daemon_script: str, shell_command: str) -> tuple[int, int]:
    """Run ``daemon_script`` as a stand-in daemon that starts ``spec`` (running ``shell_command``)
    and prints the container's pid and its zygote's, then SIGKILL it. Returns the two pids; the
    runner's finalizer cleans up the container whatever the test does next."""
    daemon = subprocess.Popen([sys.executable, "-c", daemon_script, str(runner.home), str(spec.rootfs),
                               str(spec.state_dir), spec.container_id, shell_command],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pid, zygote = map(int, daemon.stdout.readline().split())
    finally:
        daemon.kill()
        daemon.wait()
    runner.specs.append(spec)
    runner.pids.append(pid)
    return pid, zygote


class TestDaemonKill(ExecFixtures):
    def test_containers_survive_a_sigkilled_daemon(self, runner, make_spec):
        """A real process plays the daemon and is SIGKILLed while its container writes output."""
        spec = make_spec(["unused"], open_stdin=True)
        script = "i=0; while read x; do i=$((i+1)); echo line $i $x; if [ $x = end ]; then exit 3; fi; done"
        pid, zygote = start_and_kill_daemon(runner, spec, DAEMON_SCRIPT, script)
        wait_for(lambda: not alive(zygote), what="the zygote to notice the daemon is gone")
        assert alive(pid)
        spec.log_path = spec.state_dir / "log.json"
        driver = runner.driver
        assert driver.restore(spec) is True
        attachment = driver.attach(spec.container_id)
        attachment.write(b"a\n")
        assert attachment.read()[1] == b"line 1 a\n"
        attachment.close()
        # the daemon dies again; the container finishes while no daemon is there
        survivor = runner.restart_daemon()
        assert survivor.restore(spec) is True
        attachment = survivor.attach(spec.container_id)
        attachment.write(b"end\n")
        assert attachment.read()[1] == b"line 2 end\n"
        assert survivor.wait(spec.container_id, 30) == 3
        assert log_text(spec) == "line 1 a\nline 2 end\n"
        third = runner.factory()
        assert third.restore(spec) is False
        assert third.wait(spec.container_id) == 3

    def test_daemon_killed_during_on_namespace_leaves_nothing(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"])
        script = DAEMON_SCRIPT.replace(
            "print(driver.start(spec), driver._zygote.pid, flush=True)",
            "driver.start(spec, lambda pid: (print(pid, driver._zygote.pid, flush=True), time.sleep(1000)))")
        pid, zygote = start_and_kill_daemon(runner, spec, script, "true")
        wait_for(lambda: not alive(pid), what="the monitor to kill the half-started container")
        wait_for(lambda: not probe().container(spec.container_id).exists(), what="the monitor to remove the cgroups")
        wait_for(lambda: not alive(zygote), what="the zygote to exit")
        assert not (spec.state_dir / "exec" / "monitor.sock").exists()
