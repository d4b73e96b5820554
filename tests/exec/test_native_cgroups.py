"""The native driver's cgroups: the cgroups contract (pause, stats, devices, v2 limits), the
cgroup v2 pieces on their own (cpu.weight, the eBPF device program, the daemon's leaf), and the
device filter attached for real to a cgroup of the host's unified hierarchy where there is one."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid

import pytest

from moorage.core.sdk.errors import DriverError, InvalidParameter
from moorage.core.sdk.hookspecs.exec import Resources
from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.exec import ExecFixtures, alive, log_text, wait_for
from moorage.core.testing.exec_cgroups import ExecCgroupsContract, unified
from moorage.drivers.exec.common import systemd_bus
from moorage.drivers.exec.common.policy import DEVICE_WHITELIST, cpu_weight
from moorage.drivers.exec.native import devices, systemd_scope
from moorage.drivers.exec.native.cgroups import CGROUP_ROOT, DAEMON_LEAF, PARENT, own_cgroup

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the native exec driver needs root")


@pytest.fixture
def moorage_driver() -> DriverUnderTest:
    """The contract's driver: native, built by name as the daemon builds it."""
    return DriverUnderTest.from_toml("exec", "native")


@needs_root
class TestNativeCgroupsContract(ExecCgroupsContract):
    """The cgroups contract."""


@pytest.mark.parametrize(("shares", "weight"), [(1, 1), (2, 1), (512, 59), (1024, 100), (2048, 174),
                                                 (262144, 10000), (10 ** 6, 10000)])
def test_cpu_weight_from_shares(shares, weight):
    assert cpu_weight(shares) == weight


def test_cpu_weight_is_monotonic():
    weights = [cpu_weight(s) for s in range(2, 262145, 97)]
    assert weights == sorted(weights) and 1 <= weights[0] and weights[-1] <= 10000


def test_device_rules_parse():
    rule = devices.DeviceRule.parse("c 136:* rwm")
    assert (rule.type, rule.major, rule.minor, rule.access) == (devices.DEV_CHAR, 136, None, devices.ACC_ALL)
    assert devices.DeviceRule.parse("a") == devices.DeviceRule(None, None, None, devices.ACC_ALL)
    assert devices.DeviceRule.parse("b *:* m").access == devices.ACC_MKNOD
    for bad in ("x 1:3 rwm", "c 1 rwm", "c 1:3 rwx", "c one:3 r", "c 1:3", ""):
        with pytest.raises(InvalidParameter):
            devices.DeviceRule.parse(bad)


def run_program(code: bytes, dev_type: int, major: int, minor: int, access: int) -> int:
    """A tiny interpreter for the opcodes ``devices.program`` emits: what the kernel would return."""
    regs = [0] * 11
    ctx = [(access << 16) | dev_type, major, minor]
    pc = 0
    insns = [code[i:i + 8] for i in range(0, len(code), 8)]
    while True:
        op, regs_byte = insns[pc][0], insns[pc][1]
        off = int.from_bytes(insns[pc][2:4], "little", signed=True)
        imm = int.from_bytes(insns[pc][4:8], "little", signed=True)
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if op == 0x61:
            regs[dst] = ctx[off // 4]
        elif op == 0x54:
            regs[dst] = regs[dst] & (imm & 0xFFFFFFFF)
        elif op == 0x74:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == 0xBC:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == 0xB7:
            regs[dst] = imm
        elif op == 0x55:
            if regs[dst] != imm:
                pc += off
        elif op == 0x95:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")


def test_device_program_allows_exactly_the_rules():
    code = devices.program(devices.parse_rules(DEVICE_WHITELIST))
    C, B = devices.DEV_CHAR, devices.DEV_BLOCK
    R, W, M = devices.ACC_READ, devices.ACC_WRITE, devices.ACC_MKNOD
    assert run_program(code, C, 1, 3, R | W) == 1  # null
    assert run_program(code, C, 136, 7, R) == 1  # pts/7 (136:*)
    assert run_program(code, C, 1, 3, M) == 1
    assert run_program(code, C, 1, 11, W) == 0  # kmsg
    assert run_program(code, C, 1, 1, R) == 0  # mem
    assert run_program(code, B, 1, 3, R) == 0  # a block device with null's numbers
    assert run_program(code, B, 8, 0, R | W) == 0  # sda
    read_only = devices.program(devices.parse_rules(["c 1:3 r"]))
    assert run_program(read_only, C, 1, 3, R) == 1
    assert run_program(read_only, C, 1, 3, R | W) == 0
    everything = devices.program(devices.parse_rules(["a"]))
    assert run_program(everything, B, 8, 0, R | W | M) == 1


UNIFIED = CGROUP_ROOT / "unified" if not unified() else CGROUP_ROOT


@pytest.mark.skipif(os.geteuid() != 0 or not (UNIFIED / "cgroup.procs").exists(), reason="root and a cgroup2 mount")
@pytest.mark.parametrize("shared_program", [False, True])
def test_device_filter_attached_to_a_real_cgroup(tmp_path, shared_program):
    """The kernel loads the program and enforces it: open and mknod of kmsg refused, null allowed
    (on this hybrid host the unified hierarchy takes device programs too)."""
    cgroup = UNIFIED / f"moorage-test-{uuid.uuid4().hex[:12]}"
    cgroup.mkdir()
    try:
        if shared_program:
            allow_list = devices.AllowList(DEVICE_WHITELIST)
            allow_list.attach(cgroup)
            allow_list.close()  # the attachment keeps the program
        else:
            devices.attach_allow_list(cgroup, DEVICE_WHITELIST)
        for name, minor in (("kmsg", 11), ("null", 3)):
            os.mknod(tmp_path / name, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
        script = (f"echo 0 > {cgroup}/cgroup.procs; (: > {tmp_path}/kmsg) 2>/dev/null && echo kmsg || echo refused; "
                  f": > {tmp_path}/null && echo null; mknod {tmp_path}/k2 c 1 11 2>/dev/null || echo no-mknod")
        done = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert done.stdout == "refused\nnull\nno-mknod\n", done
    finally:
        cgroup.rmdir()


@pytest.mark.skipif(os.geteuid() != 0 or not unified(), reason="a cgroup v2 host (the test VM: tests/vm)")
def test_daemon_moves_itself_into_a_leaf_when_its_cgroup_must_hold_children(tmp_path):
    """Started in a non-root cgroup with processes (as under systemd), the driver moves that
    cgroup's processes into ``moorage.daemon`` and enables the controllers for its subtree."""
    base = CGROUP_ROOT / f"moorage-test-{uuid.uuid4().hex[:12]}"
    base.mkdir()
    code = ("import os, sys; from pathlib import Path\n"
            f"open('{base}/cgroup.procs', 'w').write(str(os.getpid()))\n"
            "from moorage.core.sdk.driver import DriverContext\n"
            "from moorage.drivers.exec.native.driver import NativeDriver\n"
            f"d = NativeDriver(DriverContext.standalone(NativeDriver, Path('{tmp_path}')))\n"
            "print(open('/proc/self/cgroup').read().strip())\n"
            "d.cleanup()\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"0::/{base.name}/{DAEMON_LEAF}"
        for controller in ("memory", "cpu", "pids"):
            assert controller in (base / "cgroup.subtree_control").read_text().split()
        assert not (base / PARENT).exists()  # cleanup removed the unused parent
    finally:
        for leftover in (base / PARENT, base / DAEMON_LEAF, base):
            if leftover.exists():
                leftover.rmdir()


def test_own_cgroup(tmp_path):
    (tmp_path / "cgroup").write_text("4:memory:/x\n0::/system.slice/moorage.service\n")
    assert own_cgroup(str(tmp_path / "cgroup")) == "/system.slice/moorage.service"
    (tmp_path / "cgroup").write_text("0::/\n")
    assert own_cgroup(str(tmp_path / "cgroup")) == "/"


@pytest.mark.parametrize(("own", "systemd", "scope"), [
    # systemd < 254 starts the daemon in the service's own cgroup: the containers go to a scope
    ("/system.slice/moorage.service", True, ("moorage-containers.scope", "system.slice",
                                             "/system.slice/moorage-containers.scope", "moorage.service")),
    ("/system.slice/moorage@api.service", True, ("moorage-api-containers.scope", "system.slice",
                                                 "/system.slice/moorage-api-containers.scope", "moorage@api.service")),
    ("/machine.slice/machine-x.slice/engine.service", True, ("engine-containers.scope", "machine-x.slice",
                                                            "/machine.slice/machine-x.slice/engine-containers.scope",
                                                            "engine.service")),
    # systemd >= 254 (DelegateSubgroup=moorage.daemon), or a previous moorage moved it there
    ("/system.slice/moorage.service/moorage.daemon", True, None),
    ("/user.slice/user-0.slice/session-3.scope", True, None),  # started by hand in a login session
    ("/", True, None),
    ("/system.slice/moorage.service", False, None),  # no systemd as pid 1: a path that only looks like one
    ("/moorage.service", True, None),  # not in a slice
])
def test_layout_from_the_daemons_cgroup(own, systemd, scope):
    found = systemd_scope.scope_for(own, systemd)
    assert (found if found is None else (found.name, found.slice, found.cgroup, found.service)) == scope


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:path={path}</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*"/><allow receive_sender="*"/><allow own="*"/></policy>
</busconfig>
"""


@pytest.fixture
def bus(tmp_path):
    """A D-Bus daemon of the test's own (the reference implementation, no root needed): the
    address of its socket."""
    if shutil.which("dbus-daemon") is None:
        pytest.skip("dbus-daemon is not installed (bash bootstrap installs dbus)")
    path = tmp_path / "bus"
    (tmp_path / "bus.conf").write_text(BUS_CONFIG.format(path=path))
    daemon = subprocess.Popen(["dbus-daemon", "--nofork", f"--config-file={tmp_path / 'bus.conf'}"])
    try:
        wait_for(path.exists, timeout=30)
        yield systemd_bus.Address(str(path), bus=True)
    finally:
        daemon.terminate()
        daemon.wait()


def test_bus_calls_through_a_real_dbus_daemon(bus):
    """Hello, then calls whose replies hold strings, booleans and a dict of variants."""
    address, (bus_id,) = systemd_bus.call("GetId", target=systemd_bus.BUS, addresses=[bus])
    assert address == bus and len(bus_id) == 32
    assert systemd_bus.call("NameHasOwner", "s", ["org.freedesktop.DBus"], target=systemd_bus.BUS,
                            addresses=[bus])[1] == [True]
    _, (credentials,) = systemd_bus.call("GetConnectionCredentials", "s", ["org.freedesktop.DBus"],
                                         target=systemd_bus.BUS, addresses=[bus])
    assert dict(credentials)["UnixUserID"] == ("u", os.geteuid())


def test_scope_start_call_is_a_valid_message_and_reads_back(bus):
    """``StartTransientUnit``'s call as the driver sends it, passed by a real D-Bus daemon (which
    drops a malformed message and its sender) to another connection, reads back the same."""
    scope = systemd_scope.scope_for("/system.slice/moorage.service", True)
    receiver = systemd_bus.Connection(bus, timeout=30)
    sender = systemd_bus.Connection(bus, timeout=30)
    try:
        arguments = systemd_scope.start_arguments(scope, 4242)
        sender.sock.sendall(systemd_bus.message(7, receiver.name, "/org/freedesktop/systemd1",
                                                "org.freedesktop.systemd1.Manager", "StartTransientUnit",
                                                systemd_scope.START_SIGNATURE, arguments))
        got = receiver.receive()
        while got.kind != systemd_bus.METHOD_CALL:  # NameAcquired comes first
            got = receiver.receive()
    finally:
        receiver.close()
        sender.close()
    name, mode, properties, aux = got.body
    assert (name, mode, aux) == ("moorage-containers.scope", "fail", [])
    assert dict(properties) == {"Description": ("s", "containers of moorage.service (moorage)"),
                                "Slice": ("s", "system.slice"), "Delegate": ("b", 1),
                                "CollectMode": ("s", "inactive-or-failed"), "PIDs": ("au", [4242])}


def test_the_system_bus_first_else_systemds_private_socket(bus, tmp_path):
    """Addresses that cannot be reached are passed over; an error answered is final; none
    reachable fails naming each."""
    assert [a.path for a in systemd_bus.ADDRESSES] == ["/run/dbus/system_bus_socket", "/run/systemd/private"]
    assert [a.bus for a in systemd_bus.ADDRESSES] == [True, False]  # systemd's socket is peer to peer: no Hello
    missing = systemd_bus.Address(str(tmp_path / "no-bus"), bus=True)
    not_a_socket = systemd_bus.Address(str(tmp_path / "bus.conf"), bus=False)
    assert systemd_bus.call("GetId", target=systemd_bus.BUS, addresses=[missing, not_a_socket, bus])[0] == bus
    with pytest.raises(systemd_bus.CallError, match="UnknownMethod"):
        systemd_bus.call("NoSuchMethod", target=systemd_bus.BUS, addresses=[bus, missing])
    with pytest.raises(systemd_bus.Unreachable) as raised:
        systemd_bus.call("GetId", target=systemd_bus.BUS, addresses=[missing, not_a_socket])
    assert f"the system bus (unix:path={missing.path}): No such file or directory" in str(raised.value)
    assert f"systemd private socket (unix:path={not_a_socket.path}): Connection refused" in str(raised.value)


def test_scope_start_without_systemd_fails_naming_both_addresses(tmp_path):
    scope = systemd_scope.scope_for("/system.slice/moorage.service", True)
    addresses = [systemd_bus.Address(str(tmp_path / "bus"), bus=True),
                 systemd_bus.Address(str(tmp_path / "private"), bus=False)]
    with pytest.raises(DriverError) as raised:
        systemd_scope.start(scope, tmp_path, os.getpid(), addresses=addresses)
    assert "cannot ask systemd for moorage-containers.scope" in str(raised.value)
    assert str(tmp_path / "bus") in str(raised.value) and str(tmp_path / "private") in str(raised.value)


@needs_root
@pytest.mark.skipif(not unified(), reason="a cgroup v2 host (the test VM: tests/vm)")
class TestNativeV2Cgroups(ExecFixtures):
    """The v2 implementation's own paths (in the cgroup v2 VM)."""

    def test_kill_without_cgroup_kill_freezes_kills_and_thaws(self, runner, make_spec):
        """The fallback for kernels before 5.14, which have no ``cgroup.kill``."""
        spec = make_spec(["sh", "-c", "sleep 1000 & (sh -c 'sleep 1000 &'); echo ready; wait"])
        runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), timeout=30, what="the container")
        cgroups = runner.driver.cgroups.container(spec.container_id)
        pids = cgroups.pids()
        assert len(pids) >= 3
        cgroups.kill_all(kill_file=False)
        assert cgroups.pids() == []
        wait_for(lambda: not any(alive(p) for p in pids), what="every process to die")
        assert (cgroups.path / "cgroup.freeze").read_text().strip() == "0"

    def test_shared_parent_removed_by_another_daemon_is_made_again_with_its_controllers(self, runner, make_spec):
        hierarchy = runner.driver.cgroups
        hierarchy.remove_unused_parents()  # as another daemon's cleanup would, between two starts
        if hierarchy.parent.exists():
            pytest.skip("another container holds the shared parent")
        spec = make_spec(["sh", "-c", "echo ready; exec sleep 1000"], resources=Resources(memory=32 << 20, pids=8))
        runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), timeout=30, what="the container")
        assert (hierarchy.parent / spec.container_id / "memory.max").read_text().strip() == str(32 << 20)
