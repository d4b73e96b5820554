"""A persistent IPv4 address allocator for one subnet, kept in one JSON file.

Docker's rules (reference §7.3): addresses are handed out in sequence from network+2 (the
bridge usually holds network+1, and Docker's allocator skipped it in any case), wrapping
around, skipping the gateway, the network and the broadcast address; the most recently
released address is the next one offered. An address held by a container is never handed
to another one, and the file is rewritten atomically on every change so that a daemon
killed at any moment (or simply restarted) finds every reservation again.
"""

from __future__ import annotations

import ipaddress
import json
import threading
from pathlib import Path

from moorage.core.sdk.errors import Conflict, DriverError
from moorage.core.sdk.store import read_json, replace_file


class AddressPool:
    """Addresses of ``network`` (an ``IPv4Interface`` whose ``ip`` is the gateway) for containers.

    Thread-safe: the driver's methods run in several worker threads at once.
    """

    def __init__(self, path: Path, network: ipaddress.IPv4Interface) -> None:
        self.path = Path(path)
        self.gateway = network.ip
        self.network = network.network
        self._lock = threading.Lock()
        state = read_json(self.path, None) or {}
        if state.get("network") != str(self.network):
            # another subnet (a changed --bip): earlier reservations cannot be honoured
            state = {}
        self._assigned: dict[str, str] = dict(state.get("assigned", {}))
        self._released: list[str] = [a for a in state.get("released", []) if a not in self._assigned.values()]
        self._next: int = int(state.get("next", 0))

    # -- queries -------------------------------------------------------------------------
    def get(self, owner: str) -> str | None:
        with self._lock:
            return self._assigned.get(owner)

    def assigned(self) -> dict[str, str]:
        with self._lock:
            return dict(self._assigned)

    # -- changes ---------------------------------------------------------------------------
    def allocate(self, owner: str) -> str:
        """The address of ``owner``: its existing reservation, or a new one.

        Raises ``DriverError`` when every address of the subnet is taken.
        """
        with self._lock:
            held = self._assigned.get(owner)
            if held is not None:
                return held
            address = self._pick()
            self._assigned[owner] = address
            self._save()
            return address

    def reserve(self, owner: str, address: str) -> None:
        """Record that ``owner`` holds ``address`` (re-adopting a container after a restart).

        Raises ``Conflict`` if another owner holds it, ``DriverError`` if it is outside the subnet.
        """
        ip = ipaddress.IPv4Address(address)
        if ip not in self.network or not self._usable(ip):
            raise DriverError(f"address {address} is not usable in {self.network}")
        with self._lock:
            for other, held in self._assigned.items():
                if held == address and other != owner:
                    raise Conflict(f"address {address} is already held by container {other[:12]}")
            if self._assigned.get(owner) == address:
                return
            self._assigned[owner] = address
            if address in self._released:
                self._released.remove(address)
            self._save()

    def release(self, owner: str) -> str | None:
        """Give ``owner``'s address back; it is the next one offered. Unknown owners are ignored."""
        with self._lock:
            address = self._assigned.pop(owner, None)
            if address is None:
                return None
            if address in self._released:
                self._released.remove(address)
            self._released.append(address)
            self._save()
            return address

    # -- internals -------------------------------------------------------------------------
    def _usable(self, ip: ipaddress.IPv4Address) -> bool:
        first = int(self.network.network_address)
        return ip != self.gateway and first + 1 < int(ip) < int(self.network.broadcast_address)

    def _pick(self) -> str:
        taken = set(self._assigned.values())
        while self._released:
            candidate = self._released.pop()
            if candidate not in taken and self._usable(ipaddress.IPv4Address(candidate)):
                return candidate
        first = int(self.network.network_address) + 2
        size = int(self.network.broadcast_address) - first
        if size <= 0:
            raise DriverError(f"the subnet {self.network} is too small to give containers addresses")
        for step in range(size):
            offset = (self._next + step) % size
            ip = ipaddress.IPv4Address(first + offset)
            if str(ip) not in taken and self._usable(ip):
                self._next = (offset + 1) % size
                return str(ip)
        raise DriverError(f"no unallocated IP address is left in {self.network}")

    def _save(self) -> None:
        # Run state: atomic, but not forced to disk (two fsyncs per start and per removal): the
        # addresses belong to network namespaces, which do not survive a host crash either.
        replace_file(self.path, json.dumps({"network": str(self.network), "next": self._next,
                                            "assigned": self._assigned, "released": self._released}).encode(),
                     mode=0o600)
