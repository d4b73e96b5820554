"""Link, address and route work for the bridge driver: the bridge through pyroute2, a
container's join and leave through hand-packed netlink requests (``rtnl``).

A container's namespace is reached through ``/proc/<pid>/ns/net``: the container end of the
veth pair is created directly inside it (as ``eth0``, so no rename and no window in which a
temporary name exists on the host), then configured through a netlink socket made in that
namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from moorage.core.sdk.errors import DriverError
from moorage.drivers.network.bridge import rtnl

#: Docker's candidate bridge addresses, in order (reference §7.3)
BRIDGE_CANDIDATES = (
    "172.17.42.1/16", "10.0.42.1/16", "10.1.42.1/16", "10.42.42.1/16",
    "172.16.42.1/24", "172.16.43.1/24", "172.16.44.1/24", "10.0.42.1/24", "10.0.43.1/24",
    "192.168.42.1/24", "192.168.43.1/24", "192.168.44.1/24",
)
CONTAINER_IFNAME = "eth0"
#: The loopback device's index in every network namespace (the kernel's LOOPBACK_IFINDEX).
LOOPBACK_INDEX = 1
CLONE_NEWNET = 0x40000000
#: ``/sys/class/net/*/addr_assign_type`` of an address set explicitly (the kernel's NET_ADDR_SET)
NET_ADDR_SET = 3


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """The MAC address of ``ip`` on a bridge: locally administered, 02:42 and the address's
    four bytes, as Docker derives it.

    A container's MAC follows from its address, so an address handed to a new container
    keeps the MAC that the host and the other containers have cached for it. With a random
    MAC, the first container to reuse a released address is unreachable from anyone who
    spoke to the old one until that neighbour entry expires, 30 s and more (bench/soak.py
    found it). The bridge's own MAC is set the same way: otherwise the kernel gives the
    bridge the lowest MAC of its ports, which changes as containers come and go and leaves
    every container's cached gateway MAC wrong.
    """
    return "02:42:" + ":".join(f"{byte:02x}" for byte in ip.packed)


def host_routes(ipr: IPRoute) -> list[ipaddress.IPv4Network]:
    """The destinations of the host's IPv4 routes, without default routes."""
    nets = []
    for route in ipr.get_routes(family=socket.AF_INET):
        dst, length = route.get("RTA_DST"), route["dst_len"]
        if dst and length:
            nets.append(ipaddress.IPv4Network(f"{dst}/{length}", strict=False))
    return nets


def nameservers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[ipaddress.IPv4Address]:
    found = []
    with contextlib.suppress(OSError):
        for line in resolv_conf.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                with contextlib.suppress(ValueError):
                    found.append(ipaddress.IPv4Address(parts[1]))
    return found


def choose_bridge_address(routes: list[ipaddress.IPv4Network],
                          servers: list[ipaddress.IPv4Address]) -> ipaddress.IPv4Interface:
    """The first candidate overlapping no route and holding no nameserver (Docker 0.7's rule)."""
    for candidate in BRIDGE_CANDIDATES:
        iface = ipaddress.IPv4Interface(candidate)
        if any(iface.network.overlaps(r) for r in routes) or any(s in iface.network for s in servers):
            continue
        return iface
    raise DriverError("Could not find a free IP address range for the bridge. "
                      "Please configure its address with --bip (or [network.bridge] bip)")


def link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def ipv4_address(ipr: IPRoute, index: int) -> ipaddress.IPv4Interface | None:
    for addr in ipr.get_addr(family=socket.AF_INET, index=index):
        return ipaddress.IPv4Interface(f"{addr.get('IFA_ADDRESS')}/{addr['prefixlen']}")
    return None


def create_bridge(ipr: IPRoute, name: str, address: ipaddress.IPv4Interface, mtu: int) -> int:
    try:
        ipr.link("add", ifname=name, kind="bridge", address=mac_for(address.ip))
    except NetlinkError as exc:
        raise DriverError(f"cannot create the bridge {name}: {os.strerror(exc.code)}") from None
    index = link_index(ipr, name)
    try:
        ipr.link("set", index=index, mtu=mtu)
        ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen)
        ipr.link("set", index=index, state="up")
    except NetlinkError as exc:
        with contextlib.suppress(NetlinkError):
            ipr.link("del", index=index)
        raise DriverError(f"cannot configure the bridge {name}: {os.strerror(exc.code)}") from None
    return index


def pin_bridge_mac(ipr: IPRoute, index: int, name: str, address: ipaddress.IPv4Interface) -> None:
    """Give a bridge whose MAC follows its ports (one made before moorage set it at creation)
    the MAC ``create_bridge`` gives, so that it no longer changes as ports come and go."""
    try:
        assigned = int(Path(f"/sys/class/net/{name}/addr_assign_type").read_text())
    except (OSError, ValueError):
        return
    if assigned != NET_ADDR_SET:
        ipr.link("set", index=index, address=mac_for(address.ip))


def delete_link(ipr: IPRoute, name: str) -> bool:
    """Delete interface ``name``; False if it does not exist (a veth whose peer's namespace
    died disappears by itself)."""
    index = link_index(ipr, name)
    if index is None:
        return False
    try:
        ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != 19:  # ENODEV: gone in the meantime
            raise DriverError(f"cannot delete interface {name}: {os.strerror(exc.code)}") from None
        return False
    return True


@contextlib.contextmanager
def namespace_fd(pid: int) -> Iterator[int]:
    try:
        fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise DriverError(f"process {pid} does not exist: cannot join its network namespace") from None
    try:
        yield fd
    finally:
        os.close(fd)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def namespace_socket(pid: int) -> tuple[rtnl.Rtnl, int]:
    """A netlink socket living in the network namespace of ``pid``, and the index ``eth0`` has
    there.

    A socket stays in the namespace it was created in, so the calling thread switches into
    the namespace only while the socket is made (and the index looked up) and then back
    (setns affects the calling thread alone). ``IPRoute(netns=...)``, which forks a helper
    process, costs about thirty milliseconds.
    """
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        with namespace_fd(pid) as target:
            _setns(target)
            try:
                # never configure the host by mistake: the socket is made in the namespace of pid
                if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(target).st_ino:
                    raise DriverError(f"could not enter the network namespace of process {pid}")
                try:
                    index = socket.if_nametoindex(CONTAINER_IFNAME)
                except OSError:
                    raise DriverError(f"the network namespace of process {pid} has no {CONTAINER_IFNAME}") from None
                return rtnl.Rtnl(), index
            finally:
                try:
                    _setns(own)
                except OSError as exc:  # cannot happen short of a kernel bug; say so loudly
                    raise RuntimeError(f"a worker thread could not return to the daemon's network "
                                       f"namespace: {exc}") from exc
    finally:
        os.close(own)


def attach_container(pid: int, host_ifname: str, bridge: str, address: ipaddress.IPv4Interface,
                     gateway: str, mtu: int) -> None:
    """Create the veth pair (``host_ifname`` on ``bridge``, ``eth0`` in the namespace of
    ``pid``, with the MAC of its address), configure ``eth0`` and loopback and the default
    route via ``gateway``: one netlink request on the host, one batch of four in the namespace.

    A leftover ``host_ifname`` (of a container killed along with the daemon) is deleted and
    the pair made again. On failure the host end is deleted (which takes the container end
    with it).
    """
    try:
        bridge_index = socket.if_nametoindex(bridge)
    except OSError:
        raise DriverError(f"the bridge {bridge} does not exist") from None
    with rtnl.Rtnl() as host, namespace_fd(pid) as nsfd:
        create = rtnl.new_veth(host_ifname, bridge_index, CONTAINER_IFNAME, nsfd, mtu, mac_for(address.ip))
        try:
            try:
                host.request([create], ["creating the veth pair"])
            except rtnl.RtnlError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                with contextlib.suppress(FileNotFoundError):  # ENODEV: it went in the meantime
                    _delete_quietly(host, host_ifname)
                host.request([create], ["creating the veth pair"])
        except rtnl.RtnlError as exc:
            raise DriverError(f"cannot create the veth pair {host_ifname}: {exc.strerror}") from None
        try:
            nsr, eth0 = namespace_socket(pid)
            with nsr:
                nsr.request([rtnl.link_up(rtnl.LOOPBACK_INDEX), rtnl.add_address(eth0, address), rtnl.link_up(eth0),
                             rtnl.add_default_route(gateway)],
                            ["loopback up", "eth0's address", "eth0 up", "the default route"])
        except BaseException as exc:
            with contextlib.suppress(rtnl.RtnlError):
                host.request([rtnl.delete_link(host_ifname)], ["deleting the veth pair"])
            if isinstance(exc, rtnl.RtnlError):
                raise DriverError(f"cannot configure the network of process {pid}: {exc}") from None
            raise


def _delete_quietly(host: rtnl.Rtnl, ifname: str) -> None:
    """Delete ``ifname``; ``FileNotFoundError`` if it does not exist, ``DriverError`` if it cannot go."""
    try:
        host.request([rtnl.delete_link(ifname)], [f"deleting {ifname}"])
    except rtnl.RtnlError as exc:
        if exc.errno == errno.ENODEV:
            raise FileNotFoundError(ifname) from None
        raise DriverError(f"cannot delete interface {ifname}: {exc.strerror}") from None


def remove_link(ifname: str) -> bool:
    """Delete interface ``ifname`` in one netlink request; False if it does not exist (a veth
    whose peer's namespace died disappears by itself)."""
    with rtnl.Rtnl() as host:
        try:
            _delete_quietly(host, ifname)
        except FileNotFoundError:
            return False
    return True


def enslave(host_ifname: str, bridge: str) -> bool:
    """Put an existing host-side veth (back) on ``bridge``; False if the veth is gone."""
    with IPRoute() as ipr:
        index, bridge_index = link_index(ipr, host_ifname), link_index(ipr, bridge)
        if index is None or bridge_index is None:
            return False
        ipr.link("set", index=index, master=bridge_index, state="up")
        return True


def set_ip_forward() -> bool:
    """Turn on IPv4 forwarding (Docker 0.8's default); False if it cannot be written."""
    path = Path("/proc/sys/net/ipv4/ip_forward")
    try:
        if path.read_text().strip() != "1":
            path.write_text("1\n")
        return True
    except OSError:
        return False
