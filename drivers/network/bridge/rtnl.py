"""The few rtnetlink requests of a container's join and leave, packed by hand and sent in one
batch per namespace.

pyroute2 (0.9) runs an asyncio event loop for every request it makes; on a container's start
that costs more CPU than the kernel's own work (docs/benchmarks.md, "Where a cycle's time
goes"). The join needs five fixed requests: the veth pair (one ``RTM_NEWLINK`` that creates
both ends, puts the host end on the bridge and up, and gives the container end its name,
MTU, MAC and namespace), then in the container's namespace loopback up, the address, ``eth0``
up and the default route, sent as one ``sendmsg`` and acknowledged one by one. Everything else
(the bridge's creation, lookups at start, restore) stays with pyroute2.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from collections.abc import Iterable

NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_HDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
NLM_F_REQUEST, NLM_F_ACK, NLM_F_EXCL, NLM_F_CREATE = 0x1, 0x4, 0x200, 0x400
RTM_NEWLINK, RTM_DELLINK, RTM_NEWADDR, RTM_NEWROUTE = 16, 17, 20, 24
IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
IFADDRMSG = struct.Struct("=BBBBI")  # family, prefix length, flags, scope, index
RTMSG = struct.Struct("=BBBBBBBBI")  # family, dst len, src len, tos, table, protocol, scope, type, flags
IFF_UP = 0x1
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 1, 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA, VETH_INFO_PEER = 1, 2, 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_GATEWAY = 5
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1
#: the loopback device's index in every network namespace (the kernel's LOOPBACK_IFINDEX)
LOOPBACK_INDEX = 1

Message = tuple[int, int, bytes]  # type, extra flags, payload


class RtnlError(OSError):
    """The kernel refused a request: ``errno`` says why, ``request`` which one."""

    def __init__(self, code: int, request: str) -> None:
        super().__init__(code, f"{request}: {os.strerror(code)}")
        self.request = request


def attr(kind: int, data: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(data)
    return struct.pack("=HH", length, kind) + data + b"\0" * (-length % 4)


def name(value: str) -> bytes:
    return value.encode() + b"\0"


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(part, 16) for part in mac.split(":"))


def new_veth(host: str, bridge_index: int, peer: str, peer_ns_fd: int, mtu: int, peer_mac: str) -> Message:
    """Create the pair ``host`` (on the bridge, up) and ``peer`` (in the namespace of ``peer_ns_fd``)."""
    peer_info = (IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, name(peer))
                 + attr(IFLA_MTU, u32(mtu)) + attr(IFLA_ADDRESS, mac_bytes(peer_mac))
                 + attr(IFLA_NET_NS_FD, u32(peer_ns_fd)))
    linkinfo = attr(IFLA_INFO_KIND, name("veth")) + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info))
    payload = (IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP) + attr(IFLA_IFNAME, name(host))
               + attr(IFLA_MTU, u32(mtu)) + attr(IFLA_MASTER, u32(bridge_index)) + attr(IFLA_LINKINFO, linkinfo))
    return RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, payload


def delete_link(ifname: str) -> Message:
    """Delete the interface called ``ifname`` (its veth peer goes with it)."""
    return RTM_DELLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, name(ifname))


def link_up(index: int) -> Message:
    return RTM_NEWLINK, 0, IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)


def add_address(index: int, address: ipaddress.IPv4Interface) -> Message:
    packed = address.ip.packed
    payload = (IFADDRMSG.pack(socket.AF_INET, address.network.prefixlen, 0, RT_SCOPE_UNIVERSE, index)
               + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed))
    return RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, payload


def add_default_route(gateway: str) -> Message:
    payload = (RTMSG.pack(socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
               + attr(RTA_GATEWAY, ipaddress.IPv4Address(gateway).packed))
    return RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, payload


class Rtnl:
    """A ``NETLINK_ROUTE`` socket of the network namespace the calling thread is in when it is
    made (a socket keeps its namespace). Not thread-safe: one per thread and task."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_ROUTE)
        try:
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise
        self._seq = 0

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def request(self, messages: Iterable[Message], names: Iterable[str]) -> None:
        """Send ``messages`` in one batch, each asking for an acknowledgement, and read them all.
        The kernel runs them in order; the first refusal raises ``RtnlError`` naming the request
        (``names``, in the same order), after every answer has been read. The requests after a
        refused one have still been run."""
        batch, pending = [], {}
        for (kind, flags, payload), label in zip(messages, names, strict=True):
            self._seq += 1
            batch.append(NLMSG_HDR.pack(NLMSG_HDR.size + len(payload), kind, NLM_F_REQUEST | NLM_F_ACK | flags,
                                        self._seq, 0) + payload)
            pending[self._seq] = label
        self.sock.sendall(b"".join(batch))
        refused: RtnlError | None = None
        while pending:
            data = self.sock.recv(65536)
            offset = 0
            while offset + NLMSG_HDR.size <= len(data):
                length, kind, _, seq, _ = NLMSG_HDR.unpack_from(data, offset)
                if kind == NLMSG_ERROR and seq in pending:
                    (code,) = struct.unpack_from("=i", data, offset + NLMSG_HDR.size)
                    label = pending.pop(seq)
                    if code and refused is None:
                        refused = RtnlError(-code, label)
                offset += max(length + (-length % 4), NLMSG_HDR.size)
        if refused is not None:
            raise refused
