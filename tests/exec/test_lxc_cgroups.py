"""The cgroups contract (pause, stats, devices, v2 limits) run against the lxc driver."""

from __future__ import annotations

import pytest
from test_lxc import factory, needs_lxc

from moorage.core.contract.exec_cgroups import ExecCgroupsContract


@needs_lxc
class TestLxcCgroupsContract(ExecCgroupsContract):
    @pytest.fixture
    def exec_driver(self):
        return factory
