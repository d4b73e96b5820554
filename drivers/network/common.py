"""What the network drivers share: port keys (``"80/tcp"``), the host ports handed out for
``HostPort`` 0, and ``UnmanagedNetwork``, the base of the drivers that keep nothing on the host.

Random host ports come from Docker's range, per protocol, in rotating order (reference §7.3):
the allocator remembers where it stopped and goes on from there, so a port just given back is
not reused at once. It only tracks the ports moorage itself holds; a port some other program
holds is found when the proxy tries to bind it, and the caller then asks for the next one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from moorage.core.sdk.errors import Conflict, InvalidParameter
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding

PORT_RANGE_START = 49153
PORT_RANGE_END = 65535
PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True, order=True)
class PortKey:
    port: int
    proto: str

    def __str__(self) -> str:
        return f"{self.port}/{self.proto}"


def parse_port_key(key: str) -> PortKey:
    """``"80/tcp"``, ``"53/udp"`` or ``"80"`` (tcp) -> ``PortKey``; anything else is InvalidParameter."""
    port, _, proto = str(key).partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidParameter(f"Invalid port specification: {key!r} (the protocol must be tcp or udp)")
    try:
        number = int(port)
    except ValueError:
        raise InvalidParameter(f"Invalid port specification: {key!r}") from None
    if not 0 < number < 65536:
        raise InvalidParameter(f"Invalid port specification: {key!r} (port out of range)")
    return PortKey(number, proto)


def parse_host_port(value: int | str) -> int:
    """A binding's HostPort (``""``/0 for "any"); InvalidParameter when it is not a port number."""
    if value in ("", None):
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidParameter(f"Invalid host port: {value!r}") from None
    if not 0 <= number < 65536:
        raise InvalidParameter(f"Invalid host port: {value!r}")
    return number


class HostPorts:
    """The host ports moorage holds, per protocol; thread-safe."""

    def __init__(self, start: int = PORT_RANGE_START, end: int = PORT_RANGE_END) -> None:
        self.start, self.end = start, end
        self._held: dict[str, set[int]] = {p: set() for p in PROTOCOLS}
        self._next: dict[str, int] = dict.fromkeys(PROTOCOLS, start)
        self._lock = threading.Lock()

    def hold(self, proto: str, port: int) -> None:
        """Take ``port``; ``Conflict`` ("Port already in use: N") if moorage already holds it."""
        with self._lock:
            if port in self._held[proto]:
                raise Conflict(f"Port already in use: {port}")
            self._held[proto].add(port)

    def candidates(self, proto: str):
        """Free ports in rotating order, each taken as it is yielded (give back the unused
        ones with ``free``); the caller stops at the first one it can bind."""
        size = self.end - self.start + 1
        for _ in range(size):
            with self._lock:
                port = self._next[proto]
                self._next[proto] = port + 1 if port < self.end else self.start
                if port in self._held[proto]:
                    continue
                self._held[proto].add(port)
            yield port

    def free(self, proto: str, port: int) -> None:
        with self._lock:
            self._held[proto].discard(port)

    def held(self, proto: str) -> set[int]:
        with self._lock:
            return set(self._held[proto])


class UnmanagedNetwork(NetworkDriver):
    """What the ``host`` and ``none`` drivers share: nothing on the host side. Neither
    publishes ports (every requested port is shown as exposed only) nor keeps anything on disk,
    so ``leave``, ``release``, ``restore`` and ``cleanup`` have nothing to undo."""

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
