"""What ``pytest --pyargs moorage.core.testing --moorage-driver FAMILY=NAME`` collects: each
family's whole suite, run against the drivers named (the plugin leaves out the other families).
"""

from moorage.core.testing.confinement import ConfinementContract, probe_binary  # noqa: F401 - its fixture
from moorage.core.testing.exec import ExecDriverContract
from moorage.core.testing.exec_cgroups import ExecCgroupsContract
from moorage.core.testing.graph import GraphDriverContract
from moorage.core.testing.network import NetworkDriverContract
from moorage.core.testing.registry import RegistryClientContract
from moorage.core.testing.volume import VolumeDriverContract


class TestGraphDriver(GraphDriverContract):
    pass


class TestExecDriver(ExecDriverContract):
    pass


class TestExecConfinement(ConfinementContract):
    pass


class TestExecCgroups(ExecCgroupsContract):
    pass


class TestNetworkDriver(NetworkDriverContract):
    pass


class TestRegistryClient(RegistryClientContract):
    pass


class TestVolumeDriver(VolumeDriverContract):
    pass
