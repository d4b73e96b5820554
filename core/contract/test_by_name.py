"""What ``pytest --pyargs moorage.core.contract --moorage-driver FAMILY=NAME`` collects: each
family's whole suite, run against the drivers named (the plugin leaves out the other families).
"""

from moorage.core.contract.confinement import ConfinementContract, probe_binary  # noqa: F401 - its fixture
from moorage.core.contract.exec import ExecDriverContract
from moorage.core.contract.exec_cgroups import ExecCgroupsContract
from moorage.core.contract.graph import GraphDriverContract
from moorage.core.contract.network import NetworkDriverContract
from moorage.core.contract.registry import RegistryClientContract


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
