"""The ``bridge`` network driver (the default): a Linux bridge, a veth pair per container,
addresses from a persistent pool, NAT and published ports in moorage's own nftables table,
and a userland proxy on every published port.

Config (``[network.bridge]``; the daemon's ``-b NAME`` sets ``name``, ``--bip`` sets ``bip``)::

    [network.bridge]
    name = "moorage0"        # the bridge; an existing one is used as it is
    bip = "172.17.42.1/16"   # unset: Docker's first candidate overlapping no host route
    table = "moorage"        # the nftables table (ip family) the driver owns
    mtu = 1500
    ip_forward = true        # write 1 to /proc/sys/net/ipv4/ip_forward at start

State in the driver's home: ``bridge.json`` (whether moorage created the bridge) and
``addresses.json`` (the address pool). Nothing else needs to survive the daemon: its proxies
die with it, the nftables table is recreated empty at start, and a container's host veth
name is derived from the container id, so ``leave`` works after a restart too; core hands
``restore`` the ``Endpoint`` of each container still running.

Inter-container traffic is always allowed (Docker's ``-icc=true``): ``link`` has nothing to
open. The bridge is removed by ``cleanup`` only if moorage created it and no container is
attached any more; a bridge that existed before is never removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pyroute2 import IPRoute

from moorage.core.sdk.driver import DriverContext, FamilySettings
from moorage.core.sdk.errors import ConfigError, Conflict, DriverError, InvalidParameter, NotSupported
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver, PortBinding
from moorage.core.sdk.store import read_json, write_json
from moorage.drivers.network.bridge import links
from moorage.drivers.network.bridge.ipam import AddressPool
from moorage.drivers.network.bridge.nft import NatTable
from moorage.drivers.network.bridge.proxy import Forward, ProxyServer
from moorage.drivers.network.bridge.reaper import LinkReaper
from moorage.drivers.network.common import HostPorts, PortKey, parse_host_port, parse_port_key

log = logging.getLogger(__name__)

IFNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
TABLE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class BridgeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "moorage0"
    bip: str | None = None
    table: str = "moorage"
    mtu: int = 1500
    ip_forward: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not IFNAME_RE.match(value) or value == "none":
            raise ValueError("a bridge name is 1 to 15 letters, digits, '_', '.' or '-'")
        return value

    @field_validator("bip")
    @classmethod
    def _bip(cls, value: str | None) -> str | None:
        if value is None:
            return None
        iface = ipaddress.IPv4Interface(value)  # ValueError names the problem
        if iface.network.prefixlen > 30 or iface.ip in (iface.network.network_address,
                                                        iface.network.broadcast_address):
            raise ValueError("bip must be the bridge's address with its mask, e.g. 172.17.42.1/16")
        return str(iface)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        if not TABLE_RE.match(value):
            raise ValueError("an nftables table name starts with a letter and holds letters, digits, '_', '-'")
        return value

    @field_validator("mtu")
    @classmethod
    def _mtu(cls, value: int) -> int:
        if not 68 <= value <= 65535:
            raise ValueError("mtu must be between 68 and 65535")
        return value


def _parse_requested(ports: dict[str, list[PortBinding]]) -> list[tuple[PortKey, list[PortBinding]]]:
    out = []
    for key, bindings in (ports or {}).items():
        parsed = parse_port_key(key)
        checked = []
        for binding in bindings or []:
            host_ip = binding.host_ip or ""
            if host_ip:
                try:
                    ipaddress.IPv4Address(host_ip)
                except ValueError:
                    raise InvalidParameter(f"Invalid host IP address for port {key}: {host_ip!r}") from None
            checked.append(PortBinding(host_ip, parse_host_port(binding.host_port)))
        out.append((parsed, checked))
    return out


def _same_namespace_as_host(pid: int) -> bool:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat("/proc/self/ns/net").st_ino
    except FileNotFoundError:
        raise DriverError(f"process {pid} does not exist: cannot join its network namespace") from None


def host_veth_name(bridge: str, container_id: str) -> str:
    """The host end of a container's veth pair on ``bridge``: derived from the container so
    that a restarted daemon (which has no record of it) can still find and remove it."""
    digest = hashlib.sha256(f"{bridge}/{container_id}".encode()).hexdigest()
    return f"veth{digest[:10]}"


class BridgeDriver(NetworkDriver):
    """Containers on a Linux bridge with NAT (see the module docstring)."""

    name = "bridge"
    priority = 10
    Options = BridgeOptions

    def __init__(self, context: DriverContext[BridgeOptions, FamilySettings]) -> None:
        super().__init__(context)
        opts = context.options
        if os.geteuid() != 0:
            raise NotSupported("the bridge driver needs root (CAP_NET_ADMIN)")
        if shutil.which("nft") is None:
            raise NotSupported("the nft command (Debian package nftables) is not installed")
        self.default_ip = context.daemon.default_ip or "0.0.0.0"
        self.bridge = opts.name
        self.mtu = opts.mtu
        self._marker = self.home / "bridge.json"
        existed = self._bridge_exists()
        self.address, self.created = self._set_up_bridge(opts)
        self.table = NatTable(opts.table, self.bridge, self.address.network)
        try:
            write_json(self._marker, {"name": self.bridge, "created": self.created, "address": str(self.address)})
            self.ip_forward = links.set_ip_forward() if opts.ip_forward else None
            self.table.create()
            self.pool = AddressPool(self.home / "addresses.json", self.address)
        except BaseException:  # a driver that fails to start leaves the host as it found it
            with contextlib.suppress(Exception):
                self.table.delete()
            if not existed:
                with contextlib.suppress(Exception), IPRoute() as ipr:
                    links.delete_link(ipr, self.bridge)
            raise
        self.host_ports = HostPorts()
        self.proxy = ProxyServer(f"moorage-proxy-{self.bridge}")
        self._lock = threading.Lock()
        #: container id -> {"address", "forwards"} of the containers this instance joined or restored
        self._joined: dict[str, dict[str, Any]] = {}
        #: containers whose ``leave`` this instance completed (their exit), so that ``release``
        #: (their removal) need not look for the veth again: a netlink round trip or two
        self._left: set[str] = set()
        #: deletes host veths in the background (see ``_delete_veth_later``)
        self._reaper = LinkReaper(self._delete_veth, f"bridge-rm-{self.bridge}")

    # -- the bridge ------------------------------------------------------------------------
    def _set_up_bridge(self, opts: BridgeOptions) -> tuple[ipaddress.IPv4Interface, bool]:
        wanted = ipaddress.IPv4Interface(opts.bip) if opts.bip else None
        marker = read_json(self._marker, {}) or {}
        with IPRoute() as ipr:
            index = links.link_index(ipr, self.bridge)
            if index is not None:
                kind = ipr.get_links(index)[0].get(("IFLA_LINKINFO", "IFLA_INFO_KIND"))
                if kind != "bridge":
                    raise ConfigError(f"network interface {self.bridge} exists and is not a bridge")
                current = links.ipv4_address(ipr, index)
                if current is None:
                    raise ConfigError(f"the bridge {self.bridge} has no IPv4 address; give it one "
                                      f"or choose another bridge")
                if wanted is not None and current != wanted:
                    raise ConfigError(f"bip {wanted} does not match the address {current} of the existing "
                                      f"bridge {self.bridge}")
                # a bridge this driver created before a crash or restart is still ours to remove
                created = bool(marker.get("created")) and marker.get("name") == self.bridge
                if created:  # a bridge that existed before moorage is left as it is
                    links.pin_bridge_mac(ipr, index, self.bridge, current)
                return current, created
            address = wanted or links.choose_bridge_address(links.host_routes(ipr), links.nameservers())
            links.create_bridge(ipr, self.bridge, address, opts.mtu)
            return address, True

    def _bridge_exists(self) -> bool:
        with IPRoute() as ipr:
            return links.link_index(ipr, self.bridge) is not None

    def _attached_links(self) -> list[str]:
        with IPRoute() as ipr:
            index = links.link_index(ipr, self.bridge)
            if index is None:
                return []
            return [link.get("ifname") for link in ipr.get_links() if link.get("IFLA_MASTER") == index]

    # -- endpoint state --------------------------------------------------------------------
    def _veth_name(self, container_id: str) -> str:
        return host_veth_name(self.bridge, container_id)

    # -- publishing ------------------------------------------------------------------------
    def _publish(self, key: PortKey, binding: PortBinding, address: str) -> Forward:
        host_ip = binding.host_ip or self.default_ip
        if binding.host_port:
            self.host_ports.hold(key.proto, binding.host_port)
            forward = Forward(key.proto, host_ip, binding.host_port, address, key.port)
            try:
                self.proxy.open(forward)
            except BaseException:
                self.host_ports.free(key.proto, binding.host_port)
                raise
        else:
            for port in self.host_ports.candidates(key.proto):
                forward = Forward(key.proto, host_ip, port, address, key.port)
                try:
                    self.proxy.open(forward)
                    break
                except Conflict:  # held by another program: try the next one
                    self.host_ports.free(key.proto, port)
                except BaseException:
                    self.host_ports.free(key.proto, port)
                    raise
            else:
                raise Conflict(f"no free host port is left for {key}")
        try:
            self.table.add_mapping(key.proto, host_ip, forward.host_port, address, key.port)
        except BaseException:
            self._unpublish(forward)
            raise
        return forward

    def _unpublish(self, forward: Forward) -> None:
        try:
            self.table.remove_mapping(forward.proto, forward.host_ip, forward.host_port)
        finally:
            self.proxy.close(forward)
            self.host_ports.free(forward.proto, forward.host_port)

    def _publish_all(self, requested, address: str, undo: contextlib.ExitStack) -> list[Forward]:
        forwards = []
        for key, bindings in requested:
            for binding in bindings:
                forward = self._publish(key, binding, address)
                undo.callback(self._unpublish, forward)
                forwards.append(forward)
        return forwards

    @staticmethod
    def _endpoint_ports(requested, forwards: list[Forward]) -> dict[str, list[PortBinding] | None]:
        ports: dict[str, list[PortBinding] | None] = {}
        made = iter(forwards)
        for key, bindings in requested:
            if not bindings:
                ports.setdefault(str(key), None)
                continue
            entry = ports.get(str(key)) or []
            for _ in bindings:
                forward = next(made)
                entry.append(PortBinding(forward.host_ip, forward.host_port))
            ports[str(key)] = entry
        return ports

    def _remember(self, container_id: str, address: str, forwards: list[Forward]) -> None:
        with self._lock:
            self._joined[container_id] = {"address": address, "forwards": forwards}

    # -- the contract ----------------------------------------------------------------------
    def join(self, container_id: str, pid: int, ports: dict[str, list[PortBinding]],
             hostname: str = "") -> Endpoint:
        requested = _parse_requested(ports)
        with self._lock:
            if container_id in self._joined:
                raise Conflict(f"container {container_id[:12]} is already connected to {self.bridge}")
        if _same_namespace_as_host(pid):
            raise DriverError(f"process {pid} shares the daemon's network namespace; it needs its own")
        veth = self._veth_name(container_id)
        with self._lock:
            self._left.discard(container_id)
        self._wait_deleted(veth)  # of this container's previous run
        with contextlib.ExitStack() as undo:
            if self.pool.get(container_id) is None:
                undo.callback(self.pool.release, container_id)
            address = self.pool.allocate(container_id)
            interface = ipaddress.IPv4Interface(f"{address}/{self.address.network.prefixlen}")
            # a leftover veth of a container killed along with the daemon is replaced
            links.attach_container(pid, veth, self.bridge, interface, str(self.address.ip), self.mtu)
            undo.callback(self._delete_veth, veth)
            forwards = self._publish_all(requested, address, undo)
            self._remember(container_id, address, forwards)
            undo.pop_all()
        return Endpoint(ip_address=address, ip_prefix_len=self.address.network.prefixlen,
                        gateway=str(self.address.ip), bridge=self.bridge,
                        ports=self._endpoint_ports(requested, forwards))

    def _delete_veth(self, veth: str) -> None:
        links.remove_link(veth)

    def _delete_veth_later(self, veth: str) -> None:
        """Delete a veth in the background (``reaper.py``): ``leave`` runs when the container
        exits, which its removal waits for; a ``join`` that needs the same name waits for the
        deletion (``_wait_deleted``), ``cleanup`` for all."""
        self._reaper.delete_later(veth)

    def _wait_deleted(self, veth: str | None = None) -> None:
        """Wait for the deletion of ``veth`` (of every veth being deleted, with None)."""
        self._reaper.wait(veth)

    def leave(self, container_id: str) -> None:
        # after a daemon restart nothing is remembered, and nothing needs to be: the proxies
        # died with the old daemon, the table was recreated empty, the veth name is derived
        with self._lock:
            state = self._joined.pop(container_id, None)
        errors = []
        for forward in (state or {}).get("forwards", []):
            try:
                self._unpublish(forward)
            except Exception as exc:  # go on: the rest must be undone too
                errors.append(exc)
        self._delete_veth_later(self._veth_name(container_id))
        if errors:
            raise DriverError(f"leaving the network of {container_id[:12]} failed: {errors[0]}")
        if state is not None:
            with self._lock:
                self._left.add(container_id)

    def release(self, container_id: str) -> None:
        try:
            with self._lock:
                left = container_id in self._left and container_id not in self._joined
                self._left.discard(container_id)
            if not left:
                self.leave(container_id)
        finally:
            self.pool.release(container_id)

    def restore(self, container_id: str, endpoint: Endpoint) -> None:
        address = endpoint.ip_address or self.pool.get(container_id)
        if not address:
            raise DriverError(f"container {container_id[:12]} has no address to restore")
        self.pool.reserve(container_id, address)
        veth = self._veth_name(container_id)
        if not links.enslave(veth, self.bridge):
            log.warning("container %s: host interface %s is gone; its network is not restored",
                        container_id[:12], veth)
        requested = [(parse_port_key(k), [b for b in (v or []) if b.host_port]) for k, v in endpoint.ports.items()]
        with contextlib.ExitStack() as undo:
            forwards = self._publish_all(requested, address, undo)
            self._remember(container_id, address, forwards)
            undo.pop_all()

    def status(self) -> list[tuple[str, str]]:
        with self._lock:
            joined = len(self._joined)
        return [("Bridge", self.bridge), ("Bridge IP", str(self.address)),
                ("NAT table", f"ip {self.table.name}"), ("Containers on the bridge", str(joined)),
                ("Published ports", str(len(self.proxy.forwards()))),
                ("IPv4 forwarding", {True: "enabled", False: "disabled", None: "unchanged"}[self.ip_forward])]

    def cleanup(self) -> None:
        self._wait_deleted()
        self.proxy.stop()
        with self._lock:
            self._joined.clear()
        self.table.delete()
        if self.created and not self._attached_links():
            with IPRoute() as ipr:
                links.delete_link(ipr, self.bridge)
            with contextlib.suppress(FileNotFoundError):
                self._marker.unlink()
