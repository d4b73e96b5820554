"""The exec contract suite run against the lxc driver, plus what only the lxc driver does."""

from __future__ import annotations

import importlib.metadata
import os
import signal
import threading
from pathlib import Path

import pytest
from conftest import exec_driver_unsupported

from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.errors import DriverError, NotSupported
from moorage.core.sdk.hookspecs.exec import Mount, ProcessSpec, Resources
from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.exec import (
    ExecDriverContract,
    ExecFixtures,
    alive,
    cgroup_file,
    cgroups_named,
    log_text,
    wait_for,
)
from moorage.core.testing.exec_cgroups import v2_cgroup
from moorage.drivers.exec.lxc import config, liblxc
from moorage.drivers.exec.lxc.driver import LxcDriver, static_elf
from moorage.drivers.exec.lxc.monitor import exit_code

REASON = "the lxc exec driver needs root" if os.geteuid() != 0 else exec_driver_unsupported("lxc")
needs_lxc = pytest.mark.skipif(REASON is not None, reason=REASON or "")
#: a parameter: the memory limit key of the host's cgroup layout (v1 or v2), chosen in the test
MEMORY_KEY = "memory limit key"


@pytest.fixture
def moorage_driver() -> DriverUnderTest:
    """The contract's driver: lxc, built by name as the daemon builds it."""
    return DriverUnderTest.from_toml("exec", "lxc")


@needs_lxc
class TestLxcContract(ExecDriverContract):
    """The whole exec contract."""

def test_registered_through_the_entry_point():
    (ep,) = [e for e in importlib.metadata.entry_points(group="moorage") if e.name == "lxc"]
    pm = PluginManager()
    pm.register(ep.load(), name=ep.name)  # only this plugin: the others are not under test here
    pm.collect_drivers()
    assert pm.families["exec"].get("lxc") is LxcDriver


def test_not_supported_without_liblxc(monkeypatch, tmp_path):
    monkeypatch.setattr(liblxc, "LIBRARY", "liblxc-missing.so.0")
    if os.geteuid() != 0:
        pytest.skip("the root check comes first")
    with pytest.raises(NotSupported, match="liblxc"):
        LxcDriver(DriverContext.standalone(LxcDriver, tmp_path))


@pytest.mark.parametrize(("status", "code"), [
    (0, 0), (42 << 8, 42), (127 << 8, 127), (9 << 8 | 0x7F, 137), (15 << 8 | 0x7F, 143), (9, 137),
])
def test_exit_code_of_liblxc_error_num(status, code):
    assert exit_code(status) == code


def test_static_elf(tmp_path):
    assert not static_elf(Path("/bin/sh"))  # dynamically linked on every Debian
    (tmp_path / "script").write_text("#!/bin/sh\n")
    assert not static_elf(tmp_path / "script")
    assert not static_elf(tmp_path / "missing")


def _spec(tmp_path: Path, **fields) -> ProcessSpec:
    fields.setdefault("env", ["PATH=/bin", "NOVALUE"])
    return ProcessSpec(container_id="c" * 64, rootfs=tmp_path, args=["sh", "-c", "echo x"], hostname="h1",
                       state_dir=tmp_path, log_path=tmp_path / "log", **fields)


def test_config_render(tmp_path):
    (tmp_path / "vol dir").mkdir()
    spec = _spec(tmp_path, mounts=[Mount(tmp_path / "vol dir", "/data/in", readonly=True)],
                 resources=Resources(memory=64 << 20, cpu_shares=512, pids=10),
                 driver_options=[("lxc.uts.name", "later")])
    text = config.render(spec, tmp_path / "exec", Path("/bin/busybox"), 1, 2, (3, 4), v2=False)
    v2_text = config.render(spec, tmp_path / "exec", Path("/bin/busybox"), 1, 2, (3, 4), v2=True)
    assert "lxc.cgroup2.memory.max = 67108864" in v2_text.splitlines() and "lxc.cgroup.memory" not in v2_text
    lines = text.splitlines()
    assert "lxc.uts.name = h1" in lines and lines[-1] == "lxc.uts.name = later"  # user entries last
    assert "lxc.net.0.type = empty" in lines
    assert "lxc.init.uid = 1" in lines and "lxc.init.gid = 2" in lines and "lxc.init.groups = 3,4" in lines
    source = str(tmp_path / "vol dir").replace(" ", "\\040")
    assert f"lxc.mount.entry = {source} data/in none rbind,create=dir,ro 0 0" in lines
    assert "lxc.cgroup.memory.limit_in_bytes = 67108864" in lines
    assert "lxc.cgroup.cpu.shares = 512" in lines and "lxc.cgroup.pids.max = 10" in lines
    keep = next(line for line in lines if line.startswith("lxc.cap.keep")).split("=", 1)[1].split()
    assert "mknod" in keep and "chown" in keep and "sys_admin" not in keep and len(keep) == 14  # the allow-list
    assert f"lxc.seccomp.profile = {tmp_path / 'exec' / config.SECCOMP}" in lines
    assert "lxc.cgroup.devices.deny = a" in lines
    privileged = config.render(_spec(tmp_path, privileged=True, isolate_network=False), tmp_path, Path("/b"), 0, 0, (),
                                 v2=False)
    assert "lxc.cap.keep" not in privileged and "lxc.seccomp" not in privileged
    assert "lxc.cgroup.devices.allow = a" in privileged.splitlines()
    assert "lxc.net.0.type = none" in privileged.splitlines()
    assert config.init_argv(spec) == [config.INIT, "-i", "--", "PATH=/bin", "NOVALUE=", "sh", "-c", "echo x"]


@needs_lxc
class TestLxcSpecifics(ExecFixtures):
    def test_lxc_conf_is_appended_and_overrides(self, runner, make_spec):
        layout = runner.driver.layout  # the cgroup layout the driver probed: v1 or v2 keys and files
        key, name = ("lxc.cgroup2.cpu.weight", "cpu.weight") if layout.v2 else ("lxc.cgroup.cpu.shares", "cpu.shares")
        spec = make_spec(["sh", "-c", "hostname; echo ready; exec sleep 1000"],
                         resources=Resources(cpu_shares=512),
                         driver_options=[(key, "77"), ("lxc.uts.name", "fromconf")])
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        assert log_text(spec) == "fromconf\nready\n"
        payload = layout.payload(spec.container_id, "cpu")  # LXC's own cgroup
        assert (payload / name).read_text().strip() == "77"  # the LxcConf entry won over CpuShares
        if not layout.v2:
            assert cgroup_file(pid, "cpu", "cpu.shares") == "77"
        else:
            assert v2_cgroup(pid) == payload

    @pytest.mark.parametrize(("key", "value", "named"), [
        ("lxc.no.such.key", "1", "lxc.no.such.key"),  # refused when liblxc loads the config
        ("lxc.net.0.type", "bogus", "lxc.net.0.type"),
        ("lxc with space", "1", "lxc with space"),  # refused by the driver: it would break the file
        (MEMORY_KEY, "garbage", MEMORY_KEY),  # refused by the kernel (the host's memory limit file)
    ])
    def test_refused_entry_names_the_key_and_leaves_nothing(self, runner, make_spec, key, value, named):
        if key == MEMORY_KEY:
            v2 = runner.driver.layout.v2
            key, named = ("lxc.cgroup2.memory.max", "memory.max") if v2 else \
                ("lxc.cgroup.memory.limit_in_bytes", "memory.limit_in_bytes")
        spec = make_spec(["true"], driver_options=[("lxc.uts.name", "fine"), (key, value)])
        with pytest.raises(DriverError, match=named):
            runner.driver.start(spec)
        assert not cgroups_named(spec.container_id)
        with pytest.raises(Exception):  # noqa: B017 - NotFound: the driver does not know it
            runner.driver.wait(spec.container_id)
        fixed = make_spec(["true"], driver_options=[("lxc.uts.name", "fine")])
        assert self.run_to_exit(runner, fixed) == 0

    def test_release_of_a_running_container_kills_it(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "trap '' TERM; sleep 1000 & echo ready; wait"])
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        runner.driver.release(spec.container_id)
        assert not alive(pid)
        assert not cgroups_named(spec.container_id)

    def test_nothing_in_the_rootfs_and_no_lxc_pivot_left(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "ls -a /dev/.moorage; ls -a /"])
        before = sorted(os.listdir(spec.rootfs))
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec).startswith(".\n..\nenv\n")  # the init helper lives in the /dev tmpfs
        runner.driver.release(spec.container_id)
        assert sorted(os.listdir(spec.rootfs)) == before
        assert not any(pivot.exists() for pivot in runner.driver.layout.pivots())

    def test_signal_reaches_a_handler_in_pid_1(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "trap 'echo usr1' USR1; echo ready; while :; do sleep 0.05; done"])
        runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the trap")
        runner.driver.signal(spec.container_id, signal.SIGUSR1)
        wait_for(lambda: "usr1" in log_text(spec), what="the handler")
        assert runner.driver.wait(spec.container_id, timeout=0.1) is None

    def test_working_dir_through_an_absolute_symlink_stays_in_the_rootfs(self, runner, make_spec):
        spec = make_spec(["pwd"], working_dir="/srv/app")
        (spec.rootfs / "opt").mkdir(exist_ok=True)
        (spec.rootfs / "srv").symlink_to("/opt")  # absolute: it means the container's /opt
        assert self.run_to_exit(runner, spec) == 0
        assert (spec.rootfs / "opt" / "app").is_dir()
        assert log_text(spec) == "/opt/app\n"  # the physical directory: no $PWD is passed

    def test_working_dir_that_is_a_file_is_a_clean_error(self, runner, make_spec):
        spec = make_spec(["true"], working_dir="/etc/passwd/x")
        with pytest.raises(DriverError, match="working directory"):
            runner.driver.start(spec)
        assert not cgroups_named(spec.container_id)

    def test_concurrent_starts_and_releases_leave_nothing(self, runner, make_spec):
        specs = [make_spec(["sh", "-c", f"echo {i}; exit {i}"]) for i in range(4)]
        errors: list[BaseException] = []

        def cycle(spec: ProcessSpec) -> None:
            try:
                runner.start(spec)
                assert runner.driver.wait(spec.container_id, 30) == int(log_text(spec).strip())
                runner.driver.release(spec.container_id)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
                errors.append(exc)

        threads = [threading.Thread(target=cycle, args=(spec,)) for spec in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        for spec in specs:
            assert not cgroups_named(spec.container_id)
        assert not any(pivot.exists() for pivot in runner.driver.layout.pivots())
