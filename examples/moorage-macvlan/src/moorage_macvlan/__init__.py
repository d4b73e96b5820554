"""The ``macvlan`` network driver: each container gets ``eth0``, a macvlan (bridge mode) of the
host NIC named by ``[network.macvlan] parent``, with an address from ``range``.

    [network]
    driver = "macvlan"
    [network.macvlan]
    parent = "eth1"                 # the host NIC the containers' interfaces hang off
    subnet = "192.168.50.0/24"      # the network they are on
    range = "192.168.50.128/25"     # the addresses handed out (default: the whole subnet)
    gateway = "192.168.50.1"        # optional: the containers' default route

Containers on one parent reach each other and the parent's network directly; the host itself
cannot reach them through the parent (a property of macvlan). Ports are not published.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import threading

from pydantic import BaseModel, ConfigDict, model_validator
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from moorage.core.sdk.driver import DriverContext, FamilySettings
from moorage.core.sdk.errors import Conflict, DriverError, InvalidParameter, NotSupported
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver
from moorage.core.sdk.store import atomic_write

PORT_KEY = re.compile(r"^(\d{1,5})/(tcp|udp)$")


class MacvlanOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parent: str
    subnet: ipaddress.IPv4Network
    range: ipaddress.IPv4Network | None = None
    gateway: ipaddress.IPv4Address | None = None
    mode: str = "bridge"

    @model_validator(mode="after")
    def _consistent(self) -> MacvlanOptions:
        if self.range is not None and not self.range.subnet_of(self.subnet):
            raise ValueError(f"range {self.range} is not inside subnet {self.subnet}")
        if self.gateway is not None and self.gateway not in self.subnet:
            raise ValueError(f"gateway {self.gateway} is not inside subnet {self.subnet}")
        if self.mode not in ("bridge", "private", "vepa"):
            raise ValueError("mode must be bridge, private or vepa")
        return self


class MacvlanDriver(NetworkDriver):
    name = "macvlan"
    priority = 200  # never picked by auto-selection ahead of the built-ins
    Options = MacvlanOptions
    publishes = False

    @classmethod
    def probe(cls, context: DriverContext[MacvlanOptions, FamilySettings]) -> None:
        """Root, and the parent NIC (which only the host's own network namespace shows)."""
        if os.geteuid() != 0:
            raise NotSupported("the macvlan driver needs root (CAP_NET_ADMIN)")
        with IPRoute() as ipr:
            if not ipr.link_lookup(ifname=context.options.parent):
                raise NotSupported(f"the parent NIC {context.options.parent!r} does not exist on this host")

    def __init__(self, context: DriverContext[MacvlanOptions, FamilySettings]) -> None:
        super().__init__(context)
        self.probe(context)
        self.opts = context.options
        with IPRoute() as ipr:
            self.parent_index = ipr.link_lookup(ifname=self.opts.parent)[0]
        self._lock = threading.Lock()
        self._state_path = self.home / "addresses.json"
        state = json.loads(self._state_path.read_text()) if self._state_path.exists() else {}
        self._assigned: dict[str, str] = state.get("assigned", {})
        self._released: list[str] = state.get("released", [])
        self._joined: dict[str, int] = {}  # container -> pid, while joined

    # -- addresses ---------------------------------------------------------------------------
    def _pool(self) -> list[str]:
        hosts = (self.opts.range or self.opts.subnet).hosts()
        reserved = {self.opts.gateway, self.opts.subnet.network_address, self.opts.subnet.broadcast_address}
        return [str(ip) for ip in hosts if ip not in reserved]

    def _save(self) -> None:
        data = {"assigned": self._assigned, "released": self._released}
        atomic_write(self._state_path, json.dumps(data).encode())

    def _allocate(self, container_id: str) -> tuple[str, bool]:
        """The container's address, and whether it was newly reserved."""
        if container_id in self._assigned:
            return self._assigned[container_id], False
        held = set(self._assigned.values())
        offer = [ip for ip in reversed(self._released) if ip not in held] + \
                [ip for ip in self._pool() if ip not in held and ip not in self._released]
        if not offer:
            raise DriverError(f"no free address left in {self.opts.range or self.opts.subnet}")
        self._assigned[container_id] = offer[0]
        self._released = [ip for ip in self._released if ip != offer[0]]
        self._save()
        return offer[0], True

    # -- the contract -------------------------------------------------------------------------
    def join(self, container_id, pid, ports, hostname=""):
        for key in ports:
            match = PORT_KEY.match(key)
            if not match or not 0 < int(match.group(1)) < 65536:
                raise InvalidParameter(f"invalid port {key!r}")
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino:
                raise InvalidParameter(f"process {pid} is in the daemon's own network namespace")
        except FileNotFoundError:
            raise DriverError(f"process {pid} does not exist") from None
        with self._lock:
            if container_id in self._joined:
                raise Conflict(f"container {container_id[:12]} is already joined")
            address, new = self._allocate(container_id)
            try:
                self._configure(pid, address)
            except Exception:
                if new:
                    del self._assigned[container_id]
                    self._save()
                raise
            self._joined[container_id] = pid
        return Endpoint(ip_address=address, ip_prefix_len=self.opts.subnet.prefixlen,
                        gateway=str(self.opts.gateway or ""), ports=dict.fromkeys(ports))

    def _configure(self, pid: int, address: str) -> None:
        """eth0 made directly in the container's namespace: nothing is ever left on the host."""
        try:
            with IPRoute() as ipr:
                ipr.link("add", ifname="eth0", kind="macvlan", link=self.parent_index,
                         macvlan_mode=self.opts.mode, net_ns_pid=pid)
            with IPRoute(netns=f"/proc/{pid}/ns/net") as ns:
                lo, eth0 = ns.link_lookup(ifname="lo")[0], ns.link_lookup(ifname="eth0")[0]
                ns.link("set", index=lo, state="up")
                ns.addr("add", index=eth0, address=address, prefixlen=self.opts.subnet.prefixlen)
                ns.link("set", index=eth0, state="up")
                if self.opts.gateway is not None:
                    ns.route("add", dst="0.0.0.0/0", gateway=str(self.opts.gateway))
        except NetlinkError as exc:
            self._remove_eth0(pid)
            raise DriverError(f"macvlan on {self.opts.parent} for process {pid}: {exc}") from None

    @staticmethod
    def _remove_eth0(pid: int) -> None:
        try:
            with IPRoute(netns=f"/proc/{pid}/ns/net") as ns:
                for index in ns.link_lookup(ifname="eth0"):
                    ns.link("del", index=index)
        except (OSError, NetlinkError):
            pass  # the namespace is gone, and its interfaces with it

    def leave(self, container_id):
        with self._lock:
            pid = self._joined.pop(container_id, None)
        if pid is not None and os.path.exists(f"/proc/{pid}/ns/net"):
            self._remove_eth0(pid)

    def release(self, container_id):
        self.leave(container_id)
        with self._lock:
            address = self._assigned.pop(container_id, None)
            if address is not None:
                self._released = [ip for ip in self._released if ip != address] + [address]
                self._save()

    def restore(self, container_id, endpoint):
        with self._lock:
            for other, held in self._assigned.items():
                if held == endpoint.ip_address and other != container_id:
                    raise Conflict(f"address {held} is already held by container {other[:12]}")
            self._assigned[container_id] = endpoint.ip_address
            self._save()
            self._joined[container_id] = 0  # running; its eth0 lives on in its namespace

    def status(self):
        return [["Parent", self.opts.parent], ["Addresses", str(self.opts.range or self.opts.subnet)],
                ["Containers", str(len(self._assigned))]]

    def cleanup(self):
        pass  # every interface lives in a container's namespace: the host side is empty


@hookimpl
def moorage_network_register():
    return [MacvlanDriver]
