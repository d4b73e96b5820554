"""The ``host`` network driver: containers share the daemon's network namespace.

``isolates`` is False, so core asks the exec driver for no network namespace; a container's
ports are the host's ports already, so publishing does nothing and ``join`` returns an empty
``Endpoint`` (every requested port shown as exposed only). Nothing is kept on disk.
"""

from __future__ import annotations

from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding
from moorage.drivers.network.common import UnmanagedNetwork


class HostDriver(UnmanagedNetwork):
    """Containers on the host's network stack."""

    name = "host"
    priority = 50
    isolates = False

    def join(self, container_id: str, pid: int, ports: dict[str, list[PortBinding]],
             hostname: str = "") -> Endpoint:
        return self.exposed_only(ports)

    def status(self) -> list[tuple[str, str]]:
        return [("Network", "host (containers share the host's network namespace)")]


@hookimpl
def moorage_network_register() -> list[type[NetworkDriver]]:
    return [HostDriver]
