"""What the ``host`` and ``none`` drivers share: nothing on the host side.

Neither publishes ports (every requested port is shown as exposed only) nor keeps anything
on disk, so ``leave``, ``release``, ``restore`` and ``cleanup`` have nothing to undo.
"""

from __future__ import annotations

from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding
from moorage.drivers.network.portmap import parse_port_key


class UnmanagedNetwork(NetworkDriver):
    publishes = False

    @staticmethod
    def exposed_only(ports: dict[str, list[PortBinding]]) -> Endpoint:
        return Endpoint(ports={str(parse_port_key(key)): None for key in ports or {}})

    def leave(self, container_id: str) -> None:
        pass

    def release(self, container_id: str) -> None:
        pass

    def restore(self, container_id: str, endpoint: Endpoint) -> None:
        pass

    def cleanup(self) -> None:
        pass
