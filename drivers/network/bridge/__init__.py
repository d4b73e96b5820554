"""The ``bridge`` network driver (entry point ``bridge`` in the ``moorage`` group): the driver
(``driver``), the bridge and veth links (``links``), the address pool (``ipam``), the NAT table
(``nft``) and the userland proxy (``proxy``)."""

from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.network import NetworkDriver
from moorage.drivers.network.bridge.driver import BridgeDriver, BridgeOptions, host_veth_name


@hookimpl
def moorage_network_register() -> list[type[NetworkDriver]]:
    return [BridgeDriver]


__all__ = ["BridgeDriver", "BridgeOptions", "host_veth_name", "moorage_network_register"]
