"""The ``host`` network driver: containers share the daemon's network namespace.

``isolates`` is False, so core asks the exec driver for no network namespace; a container's
ports are the host's ports already, so publishing does nothing and ``join`` returns an empty
``Endpoint`` (every requested port shown as exposed only). Nothing is kept on disk.
"""

from __future__ import annotations

from moorage.core.hookspecs import hookimpl
from moorage.core.hookspecs.network import Endpoint, NetworkDriver, PortBinding

from .portmap import parse_port_key


class HostDriver(NetworkDriver):
    """Containers on the host's network stack."""

    name = "host"
    priority = 50
    isolates = False
    publishes = False

    def join(self, container_id: str, pid: int, ports: dict[str, list[PortBinding]],
             hostname: str = "") -> Endpoint:
        return Endpoint(ports={str(parse_port_key(key)): None for key in ports or {}})

    def leave(self, container_id: str) -> None:
        pass

    def release(self, container_id: str) -> None:
        pass

    def restore(self, container_id: str, endpoint: Endpoint) -> None:
        pass

    def status(self) -> list[tuple[str, str]]:
        return [("Network", "host (containers share the host's network namespace)")]

    def cleanup(self) -> None:
        pass


@hookimpl
def moorage_network_register() -> list[type[NetworkDriver]]:
    return [HostDriver]
