"""The exec contract's confinement suite (``moorage.core.testing.confinement``), run for every
exec driver, plus what only one driver's confinement needs."""

from __future__ import annotations

import dataclasses
import os

import pytest
from conftest import exec_driver_unsupported

from moorage.core.sdk.driver import DriverContext, DriverFamily
from moorage.core.sdk.hookspecs.exec import ExecDriver
from moorage.core.testing.confinement import ConfinementContract, probe_binary  # noqa: F401 - the fixture
from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.exec import ExecFixtures
from moorage.drivers.exec.native.driver import NativeDriver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the exec drivers need root")
LXC_REASON = exec_driver_unsupported("lxc") if os.geteuid() == 0 else None


class TestNativeConfinement(ConfinementContract):
    @pytest.fixture
    def moorage_driver(self) -> DriverUnderTest:
        return DriverUnderTest.from_toml("exec", "native")


@pytest.mark.skipif(LXC_REASON is not None, reason=LXC_REASON or "")
class TestLxcConfinement(ConfinementContract):
    @pytest.fixture
    def moorage_driver(self) -> DriverUnderTest:
        return DriverUnderTest.from_toml("exec", "lxc")


class FallbackNativeDriver(NativeDriver):
    """The native driver made to take the per-submount way to a recursive read-only bind, as on
    a kernel without ``mount_setattr`` (before 5.12)."""

    readonly_fallback = True


class TestNativeReadOnlyBindFallback(ExecFixtures):
    probe_spec = ConfinementContract.probe_spec
    run_script = ConfinementContract.run_script
    test_write_through_a_submount_of_a_read_only_bind = \
        ConfinementContract.test_write_through_a_submount_of_a_read_only_bind

    @pytest.fixture
    def moorage_driver(self) -> DriverUnderTest:
        """The variant, registered under the native driver's name in a family of its own."""
        family = DriverFamily("exec", ExecDriver)
        family.register([FallbackNativeDriver], "tests/exec/test_confinement.py")
        return dataclasses.replace(DriverUnderTest.from_toml("exec", "native"), drivers=family)


def test_confine_holds_the_calling_process_as_a_container(tmp_path):
    """``container.confine``, what ``docker exec`` reuses: in a forked child, with the program the
    driver compiled, the process gets the container's capability sets and filter."""
    import base64
    import ctypes
    import platform
    import re

    from moorage.core.sdk.hookspecs.exec import ProcessSpec
    from moorage.drivers.exec.native import container

    if platform.machine() != "x86_64":
        pytest.skip("the probe calls keyctl by its x86_64 number")
    driver = NativeDriver(DriverContext.standalone(NativeDriver, tmp_path))
    spec = ProcessSpec(container_id="0" * 64, rootfs=tmp_path, args=["true"], env=[], hostname="h",
                       state_dir=tmp_path, log_path=tmp_path / "log")
    confinement = driver.confinement(spec)
    program = base64.b64decode(confinement.seccomp_program)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        try:
            container.confine(confinement.capabilities, program, uid=0, gid=0)
            libc = ctypes.CDLL(None, use_errno=True)
            keyctl = libc.syscall(250, 0, -3, 0)  # SYS_keyctl, KEYCTL_GET_KEYRING_ID of the session keyring
            with open("/proc/self/status") as f:
                status = f.read()
            os.write(w, f"{keyctl} {ctypes.get_errno()}\n{status}".encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    first, status = out.split("\n", 1)
    assert first == "-1 1"  # EPERM from the filter
    fields = dict(re.findall(r"^(Cap\w+|Seccomp):\s*(\S+)$", status, re.M))
    assert fields == {"CapInh": "0000000000000000", "CapPrm": "00000000a80425fb", "CapEff": "00000000a80425fb",
                      "CapBnd": "00000000a80425fb", "CapAmb": "0000000000000000", "Seccomp": "2"}
