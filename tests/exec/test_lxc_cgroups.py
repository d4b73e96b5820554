"""The cgroups contract (pause, stats, devices, v2 limits) run against the lxc driver, and the
config keys it writes on cgroup v1 and v2 hosts."""

from __future__ import annotations

from pathlib import Path

from moorage.core.sdk.hookspecs.exec import ProcessSpec, Resources
from moorage.core.testing.exec_cgroups import ExecCgroupsContract
from moorage.drivers.exec.lxc import config

from .test_lxc import moorage_driver, needs_lxc  # noqa: F401  (the contract's driver: lxc)


@needs_lxc
class TestLxcCgroupsContract(ExecCgroupsContract):
    """The cgroups contract."""


def spec_with(**fields) -> ProcessSpec:
    return ProcessSpec(container_id="c" * 64, rootfs=Path("/nonexistent"), args=["true"], env=[], hostname="h",
                       state_dir=Path("/nonexistent"), log_path=Path("/nonexistent/log"), **fields)


def test_cgroup2_keys_on_a_unified_host(monkeypatch):
    monkeypatch.setattr(config, "memory_limits", lambda: (True, True))
    lines = config.cgroup_lines(spec_with(resources=Resources(memory=64 << 20, memory_swap=96 << 20, cpu_shares=512,
                                                                   pids=10)), v2=True)
    assert "lxc.cgroup2.memory.max = 67108864" in lines
    assert "lxc.cgroup2.memory.swap.max = 33554432" in lines  # swap alone
    assert "lxc.cgroup2.cpu.weight = 59" in lines and "lxc.cgroup2.pids.max = 10" in lines
    assert lines[0] == "lxc.cgroup2.devices.deny = a" and "lxc.cgroup2.devices.allow = c 136:* rwm" in lines
    assert not any(line.startswith("lxc.cgroup.") for line in lines)
    twice = config.cgroup_lines(spec_with(resources=Resources(memory=64 << 20)), v2=True)
    assert "lxc.cgroup2.memory.swap.max = 67108864" in twice  # MemorySwap 0: twice Memory in all
    unlimited = config.cgroup_lines(spec_with(resources=Resources(memory=64 << 20, memory_swap=-1)), v2=True)
    assert not any("swap" in line for line in unlimited)
    assert config.cgroup_lines(spec_with(privileged=True), v2=True) == ["lxc.cgroup2.devices.allow = a"]


def test_cgroup_keys_on_a_v1_host(monkeypatch):
    monkeypatch.setattr(config, "memory_limits", lambda: (True, True))
    lines = config.cgroup_lines(spec_with(resources=Resources(memory=64 << 20, cpu_shares=512)), v2=False)
    assert "lxc.cgroup.memory.limit_in_bytes = 67108864" in lines
    assert "lxc.cgroup.memory.memsw.limit_in_bytes = 134217728" in lines and "lxc.cgroup.cpu.shares = 512" in lines
    assert not any(line.startswith("lxc.cgroup2.") for line in lines)
