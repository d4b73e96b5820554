"""The exec contract's confinement suite (``moorage.core.contract.confinement``), run for every
exec driver, plus what only one driver's confinement needs."""

from __future__ import annotations

import os

import pytest
from conftest import exec_driver_unsupported

from moorage.core.contract.confinement import ConfinementContract, probe_binary  # noqa: F401 - the fixture
from moorage.core.contract.exec import ExecFixtures
from moorage.core.driver import NoOptions
from moorage.drivers.exec.lxc.driver import LxcDriver
from moorage.drivers.exec.native.driver import NativeDriver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the exec drivers need root")
LXC_REASON = exec_driver_unsupported("lxc") if os.geteuid() == 0 else None


class TestNativeConfinement(ConfinementContract):
    @pytest.fixture
    def exec_driver(self):
        return lambda home: NativeDriver(home, NoOptions(), {})


@pytest.mark.skipif(LXC_REASON is not None, reason=LXC_REASON or "")
class TestLxcConfinement(ConfinementContract):
    @pytest.fixture
    def exec_driver(self):
        return lambda home: LxcDriver(home, NoOptions(), {})


class FallbackNativeDriver(NativeDriver):
    """The native driver made to take the per-submount way to a recursive read-only bind, as on
    a kernel without ``mount_setattr`` (before 5.12)."""

    def confinement(self, spec):
        return {**super().confinement(spec), "readonly_fallback": True}


class TestNativeReadOnlyBindFallback(ExecFixtures):
    probe_spec = ConfinementContract.probe_spec
    run_script = ConfinementContract.run_script
    test_write_through_a_submount_of_a_read_only_bind = \
        ConfinementContract.test_write_through_a_submount_of_a_read_only_bind

    @pytest.fixture
    def exec_driver(self):
        return lambda home: FallbackNativeDriver(home, NoOptions(), {})
