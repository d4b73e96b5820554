"""The few rtnetlink requests of a container's join and leave, built with pyroute2's message
classes and sent in one batch per namespace.

pyroute2 (0.9) runs an asyncio event loop for every request its ``IPRoute`` makes (its
``NetlinkSocket`` is the same loop behind a synchronous face); on a container's start that
costs more CPU than the kernel's own work (docs/benchmarks.md, "Where a cycle's time goes").
The join needs five fixed requests: the veth pair (one ``RTM_NEWLINK`` that creates both ends,
puts the host end on the bridge and up, and gives the container end its name, MTU, MAC and
namespace), then in the container's namespace loopback up, the address, ``eth0`` up and the
default route, sent as one ``send`` and acknowledged one by one.

The wire format is pyroute2's: every request is an ``ifinfmsg``, ``ifaddrmsg`` or ``rtmsg``
encoded by the message class itself, and the answers are decoded by pyroute2's ``Marshal``
(``nlmsgerr``). Only the socket is a plain one. Everything else (the bridge's creation,
lookups at start, restore) stays with ``IPRoute``.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST, NLMSG_ERROR, nlmsg
from pyroute2.netlink.marshal import Marshal
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, rtprotos, rtypes
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import IFF_UP, ifinfmsg
from pyroute2.netlink.rtnl.rtmsg import RT_SCOPE_UNIVERSE, rtmsg

#: the main routing table (``RT_TABLE_MAIN`` in linux/rtnetlink.h; pyroute2 names no constant)
RT_TABLE_MAIN = 254
#: the loopback device's index in every network namespace (the kernel's LOOPBACK_IFINDEX)
LOOPBACK_INDEX = 1
#: the receive buffer: acks carry back the request they answer, the veth one included
RECV_SIZE = 65536

#: a request: a pyroute2 message with its payload and the header's type and extra flags set
Message = nlmsg


class RtnlError(OSError):
    """The kernel refused a request: ``errno`` says why, ``request`` which one."""

    def __init__(self, code: int, request: str) -> None:
        super().__init__(code, f"{request}: {os.strerror(code)}")
        self.request = request


def _request(msg: Message, kind: int, flags: int = 0) -> Message:
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    return msg


def new_veth(host: str, bridge_index: int, peer: str, peer_ns_fd: int, mtu: int, peer_mac: str) -> Message:
    """Create the pair ``host`` (on the bridge, up) and ``peer`` (in the namespace of ``peer_ns_fd``)."""
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["flags"] = msg["change"] = IFF_UP
    peer_info = {"attrs": [("IFLA_IFNAME", peer), ("IFLA_MTU", mtu), ("IFLA_ADDRESS", peer_mac),
                           ("IFLA_NET_NS_FD", peer_ns_fd)]}
    linkinfo = {"attrs": [("IFLA_INFO_KIND", "veth"),
                          ("IFLA_INFO_DATA", {"attrs": [("VETH_INFO_PEER", peer_info)]})]}
    msg["attrs"] = [("IFLA_IFNAME", host), ("IFLA_MTU", mtu), ("IFLA_MASTER", bridge_index),
                    ("IFLA_LINKINFO", linkinfo)]
    return _request(msg, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL)


def delete_link(ifname: str) -> Message:
    """Delete the interface called ``ifname`` (its veth peer goes with it)."""
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["attrs"] = [("IFLA_IFNAME", ifname)]
    return _request(msg, RTM_DELLINK)


def link_up(index: int) -> Message:
    msg = ifinfmsg()
    msg["family"] = socket.AF_UNSPEC
    msg["index"] = index
    msg["flags"] = msg["change"] = IFF_UP
    return _request(msg, RTM_NEWLINK)


def add_address(index: int, address: ipaddress.IPv4Interface) -> Message:
    msg = ifaddrmsg()
    msg["family"] = socket.AF_INET
    msg["prefixlen"] = address.network.prefixlen
    msg["scope"] = RT_SCOPE_UNIVERSE
    msg["index"] = index
    msg["attrs"] = [("IFA_LOCAL", str(address.ip)), ("IFA_ADDRESS", str(address.ip))]
    return _request(msg, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL)


def add_default_route(gateway: str) -> Message:
    msg = rtmsg()
    msg["family"] = socket.AF_INET
    msg["table"] = RT_TABLE_MAIN
    msg["proto"] = rtprotos["RTPROT_BOOT"]
    msg["scope"] = RT_SCOPE_UNIVERSE
    msg["type"] = rtypes["RTN_UNICAST"]
    msg["attrs"] = [("RTA_GATEWAY", str(ipaddress.IPv4Address(gateway)))]
    return _request(msg, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL)


class Rtnl:
    """A ``NETLINK_ROUTE`` socket of the network namespace the calling thread is in when it is
    made (a socket keeps its namespace). Not thread-safe: one per thread and task."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        try:
            self.sock.bind((0, 0))
        except BaseException:
            self.sock.close()
            raise
        self.marshal = Marshal()
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
        for msg, label in zip(messages, names, strict=True):
            self._seq += 1
            msg["header"]["sequence_number"] = self._seq
            msg["header"]["flags"] |= NLM_F_REQUEST | NLM_F_ACK
            msg.reset()
            msg.encode()
            batch.append(msg.data)
            pending[self._seq] = label
        self.sock.sendall(b"".join(batch))
        refused: RtnlError | None = None
        while pending:
            for answer in self.marshal.parse(self.sock.recv(RECV_SIZE)):
                header = answer["header"]
                if header["type"] != NLMSG_ERROR or header["sequence_number"] not in pending:
                    continue
                label = pending.pop(header["sequence_number"])
                if answer["error"] and refused is None:
                    refused = RtnlError(abs(answer["error"]), label)
        if refused is not None:
            raise refused
