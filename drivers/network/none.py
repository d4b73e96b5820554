"""The ``none`` network driver: a network namespace with loopback only.

Selected by ``-b none`` (or ``[network] driver = "none"``). (A container created with
``NetworkDisabled`` gets the same network whatever the daemon's driver: core then asks the exec
driver for a namespace and does not call the network driver at all.) ``join`` checks that
the process (if it still runs) has a namespace of its own; ``lo`` is up already, as the exec contract promises
for a new network namespace, so it costs no netlink round trip, and since it configures
nothing (``configures = False``) core calls it right after the start. Port bindings are
ignored, as Docker ignored them for a container without network: the ``Endpoint`` shows every
requested port as exposed only.
"""

from __future__ import annotations

import os

from moorage.core.sdk.errors import DriverError
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding
from moorage.drivers.network.common import UnmanagedNetwork


class NoneDriver(UnmanagedNetwork):
    """Loopback only."""

    name = "none"
    priority = 90
    configures = False

    def join(self, container_id: str, pid: int, ports: dict[str, list[PortBinding]],
             hostname: str = "") -> Endpoint:
        try:
            own = os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
        except (FileNotFoundError, PermissionError, ProcessLookupError):
            # called after the start: a short command may be gone already (ENOENT, or ESRCH while
            # it is being reaped), or exiting (the kernel then refuses even root its namespaces:
            # EACCES once its memory is released)
            own = True
        if not own:
            raise DriverError(f"process {pid} shares the daemon's network namespace; it needs its own")
        return self.exposed_only(ports)

    def status(self) -> list[tuple[str, str]]:
        return [("Network", "none (loopback only)")]


@hookimpl
def moorage_network_register() -> list[type[NetworkDriver]]:
    return [NoneDriver]
