"""The exec contract suite run against the native driver, plus what only the native driver does."""

from __future__ import annotations

import importlib.metadata
import os
import signal

import pytest

from moorage.core.contract.exec import ExecDriverContract, ExecFixtures, alive, log_text, wait_for
from moorage.core.driver import NoOptions
from moorage.core.errors import InvalidParameter
from moorage.core.hookspecs.exec import Resources
from moorage.core.plugins import PluginManager
from moorage.drivers.exec.native.cgroups import CGROUP_ROOT, Cgroups
from moorage.drivers.exec.native.driver import NativeDriver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native exec driver needs root")


class TestNativeContract(ExecDriverContract):
    @pytest.fixture
    def exec_driver(self):
        return lambda home: NativeDriver(home, NoOptions(), {})


def test_registered_through_the_entry_point():
    (ep,) = [e for e in importlib.metadata.entry_points(group="moorage") if e.name == "native"]
    pm = PluginManager()
    pm.register(ep.load(), name=ep.name)  # only this plugin: the others are not under test here
    pm.collect_drivers()
    assert pm.families["exec"].get("native") is NativeDriver


class TestNativeSpecifics(ExecFixtures):
    @pytest.fixture
    def exec_driver(self):
        return lambda home: NativeDriver(home, NoOptions(), {})

    def test_cgroup_layout_and_removal(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"], resources=Resources(memory=32 << 20, memory_swap=-1))
        runner.start(spec)
        paths = Cgroups(spec.container_id).paths
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

    def test_release_of_a_running_container_kills_it(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "trap '' TERM; sleep 1000 & echo ready; wait"])
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        runner.driver.release(spec.container_id)
        assert not alive(pid)
        assert not Cgroups(spec.container_id).exists()

    def test_memory_swap_below_memory_is_refused(self, runner, make_spec):
        spec = make_spec(["true"], resources=Resources(memory=64 << 20, memory_swap=32 << 20))
        with pytest.raises(InvalidParameter):
            runner.driver.start(spec)
        assert not Cgroups(spec.container_id).exists()

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
