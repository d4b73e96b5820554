"""One method call to systemd's manager over D-Bus, without a D-Bus library: the system bus
first, else systemd's own private socket (what ``systemctl`` uses as root).

Why both: the system bus needs a D-Bus daemon (``dbus.socket``), which a host may not run
(dbus not installed, masked, not yet started); systemd itself always listens on
``/run/systemd/private``, a peer-to-peer connection for root only, with no bus driver behind it.
``busctl`` cannot use that socket (``--address`` always sends the bus driver's ``Hello``, which
systemd answers with an error), so the call is made here: the D-Bus wire protocol for the few
types it needs (``y b u s o g v a ( )``, little-endian), ``AUTH EXTERNAL``, and on the bus the
``Hello`` a bus requires first.

``call`` tries the addresses in order and moves on only when one cannot be reached (no socket,
refused, not allowed, authentication refused); an error systemd answers is final (``CallError``).
When no address is reachable, ``Unreachable`` names each with its reason.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM_BUS = "/run/dbus/system_bus_socket"  # the well-known system bus address (unix:path=)
PRIVATE = "/run/systemd/private"  # systemd's own peer-to-peer socket, root only
SYSTEMD = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager")
BUS = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
_PATH, _INTERFACE, _MEMBER, _ERROR_NAME, _REPLY_SERIAL, _DESTINATION, _SENDER, _SIGNATURE = range(1, 9)
_ALIGN = {"y": 1, "g": 1, "v": 1, "b": 4, "u": 4, "i": 4, "s": 4, "o": 4, "a": 4, "(": 8, "{": 8, "t": 8, "x": 8}
_FIXED = {"y": "B", "b": "I", "u": "I", "i": "i", "t": "Q", "x": "q"}


@dataclass(frozen=True)
class Address:
    path: str  # a unix socket
    bus: bool  # a bus (send Hello first) or systemd itself (peer to peer)

    def __str__(self) -> str:
        return f"{'the system bus' if self.bus else 'systemd private socket'} (unix:path={self.path})"


#: in the order ``call`` tries them
ADDRESSES = (Address(SYSTEM_BUS, bus=True), Address(PRIVATE, bus=False))


class CallError(Exception):
    """systemd (or the bus) answered the call with a D-Bus error."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}" if message else name)
        self.name = name


class _Incomplete(Exception):
    """The buffer holds less than one whole message (read more)."""


class Unreachable(Exception):
    """No address could be connected to: the message says why for each."""


# -- marshalling ----------------------------------------------------------------------------


def _complete_types(signature: str) -> list[str]:
    """``signature`` split into its complete types: ``ssa(sv)`` → ``["s", "s", "a(sv)"]``."""
    types, i = [], 0
    while i < len(signature):
        end = _type_end(signature, i)
        types.append(signature[i:end])
        i = end
    return types


def _type_end(signature: str, i: int) -> int:
    if signature[i] == "a":
        return _type_end(signature, i + 1)
    if signature[i] in "({":
        depth = 0
        for j in range(i, len(signature)):
            depth += signature[j] in "({"
            depth -= signature[j] in ")}"
            if depth == 0:
                return j + 1
        raise ValueError(f"unbalanced signature {signature!r}")
    return i + 1


class _Writer:
    def __init__(self) -> None:
        self.data = bytearray()

    def pad(self, alignment: int) -> None:
        self.data += b"\0" * (-len(self.data) % alignment)

    def write(self, signature: str, values: Sequence[Any]) -> None:
        types = _complete_types(signature)
        if len(types) != len(values):
            raise ValueError(f"{len(values)} values for the signature {signature!r}")
        for kind, value in zip(types, values, strict=True):
            self.value(kind, value)

    def value(self, kind: str, value: Any) -> None:
        code = kind[0]
        self.pad(_ALIGN[code])
        if code in _FIXED:
            self.data += struct.pack("<" + _FIXED[code], int(value))
        elif code in "so":
            raw = value.encode()
            self.data += struct.pack("<I", len(raw)) + raw + b"\0"
        elif code == "g":
            raw = value.encode()
            self.data += struct.pack("<B", len(raw)) + raw + b"\0"
        elif code == "v":  # (signature, value)
            self.value("g", value[0])
            self.value(value[0], value[1])
        elif code == "a":
            at = len(self.data)
            self.data += b"\0\0\0\0"
            self.pad(_ALIGN[kind[1]])  # even when empty
            start = len(self.data)
            for item in value:
                self.value(kind[1:], item)
            self.data[at:at + 4] = struct.pack("<I", len(self.data) - start)
        elif code in "({":
            self.write(kind[1:-1], value)
        else:
            raise ValueError(f"type {code!r} is not supported here")


class _Reader:
    def __init__(self, data: bytes, offset: int = 0) -> None:
        self.data = data
        self.at = offset

    def read(self, signature: str) -> list[Any]:
        return [self.value(kind) for kind in _complete_types(signature)]

    def value(self, kind: str) -> Any:
        code = kind[0]
        self.at += -self.at % _ALIGN[code]
        if code in _FIXED:
            fmt = "<" + _FIXED[code]
            (value,) = struct.unpack_from(fmt, self.data, self.at)
            self.at += struct.calcsize(fmt)
            return value
        if code in "so":
            (size,) = struct.unpack_from("<I", self.data, self.at)
            text = self.data[self.at + 4:self.at + 4 + size].decode()
            self.at += 4 + size + 1
            return text
        if code == "g":
            size = self.data[self.at]
            text = self.data[self.at + 1:self.at + 1 + size].decode()
            self.at += 1 + size + 1
            return text
        if code == "v":
            inner = self.value("g")
            return (inner, self.value(inner))
        if code == "a":
            (size,) = struct.unpack_from("<I", self.data, self.at)
            self.at += 4
            self.at += -self.at % _ALIGN[kind[1]]
            end, items = self.at + size, []
            while self.at < end:
                items.append(self.value(kind[1:]))
            return items
        if code in "({":
            return tuple(self.read(kind[1:-1]))
        raise ValueError(f"type {code!r} is not supported here")


def message(serial: int, destination: str, path: str, interface: str, member: str,
            signature: str = "", body: Sequence[Any] = ()) -> bytes:
    """A method call, little-endian, protocol version 1."""
    payload = _Writer()
    payload.write(signature, body)
    fields = [(_PATH, ("o", path)), (_INTERFACE, ("s", interface)), (_MEMBER, ("s", member)),
              (_DESTINATION, ("s", destination))]
    if signature:
        fields.append((_SIGNATURE, ("g", signature)))
    header = _Writer()
    header.write("yyyyuua(yv)", [ord("l"), METHOD_CALL, 0, 1, len(payload.data), serial, fields])
    header.pad(8)
    return bytes(header.data + payload.data)


@dataclass(frozen=True)
class Reply:
    kind: int  # METHOD_RETURN, ERROR, SIGNAL...
    reply_serial: int | None
    error_name: str | None
    body: list[Any]


def parse(data: bytes) -> tuple[Reply, int]:
    """The first message in ``data`` and its length; ``_Incomplete`` if ``data`` holds less."""
    if len(data) < 16:
        raise _Incomplete
    if data[0:1] != b"l":
        raise CallError("moorage.BigEndian", "a big-endian reply is not supported")
    body_size, = struct.unpack_from("<I", data, 4)
    fields_size, = struct.unpack_from("<I", data, 12)
    start = 16 + fields_size + (-(16 + fields_size) % 8)
    if len(data) < start + body_size:
        raise _Incomplete
    header = _Reader(data, 12)
    fields = dict(header.value("a(yv)"))
    signature = fields.get(_SIGNATURE, ("g", ""))[1]
    body = _Reader(data[start:start + body_size]).read(signature)
    reply_serial = fields.get(_REPLY_SERIAL, ("u", None))[1]
    error_name = fields.get(_ERROR_NAME, ("s", None))[1]
    return Reply(data[1], reply_serial, error_name, body), start + body_size


# -- the connection ----------------------------------------------------------------------------


class Connection:
    """One authenticated connection to ``address``; on a bus, ``name`` is the unique name the
    bus gave it (``Hello``)."""

    def __init__(self, address: Address, timeout: float) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.buffer = b""
        self.serial = 0
        self.name = ""
        try:
            self.sock.connect(address.path)
            uid = str(os.geteuid()).encode().hex().encode()
            self.sock.sendall(b"\0AUTH EXTERNAL " + uid + b"\r\n")
            answer = self._line()
            if not answer.startswith(b"OK "):
                raise ConnectionRefusedError(f"authentication refused: {answer.decode(errors='replace').strip()}")
            self.sock.sendall(b"BEGIN\r\n")
            if address.bus:
                (self.name,) = self.call(*BUS, "Hello")  # a bus answers nothing before it
        except BaseException:
            self.sock.close()
            raise

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionResetError("the peer closed the connection during authentication")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def call(self, destination: str, path: str, interface: str, member: str,
             signature: str = "", body: Sequence[Any] = ()) -> list[Any]:
        self.serial += 1
        self.sock.sendall(message(self.serial, destination, path, interface, member, signature, body))
        while True:  # signals (NameAcquired on a bus) may come first
            reply = self.receive()
            if reply.reply_serial != self.serial:
                continue
            if reply.kind == ERROR:
                detail = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
                raise CallError(reply.error_name or "unknown error", detail)
            return reply.body

    def receive(self) -> Reply:
        """The next message that comes (a reply, a signal, a call)."""
        while True:
            try:
                reply, size = parse(self.buffer)
            except _Incomplete:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError("the peer closed the connection") from None
                self.buffer += chunk
                continue
            except (ValueError, struct.error, IndexError) as exc:
                raise CallError("moorage.MalformedReply", f"a reply that cannot be read: {exc}") from None
            self.buffer = self.buffer[size:]
            return reply

    def close(self) -> None:
        self.sock.close()


def call(member: str, signature: str = "", body: Sequence[Any] = (), *, target: tuple[str, str, str] = SYSTEMD,
         addresses: Sequence[Address] = ADDRESSES, timeout: float = 60.0) -> tuple[Address, list[Any]]:
    """Call ``member`` of ``target`` (destination, object, interface: systemd's manager by
    default) through the first of ``addresses`` that can be reached; returns that address and
    the reply's values. ``CallError`` if the call is answered with an error; ``Unreachable``
    (naming each address and why) if none can be reached; ``TimeoutError`` if one is reached
    but does not answer in ``timeout`` seconds."""
    failures = []
    for address in addresses:
        try:
            connection = Connection(address, timeout)
        except (FileNotFoundError, ConnectionRefusedError, PermissionError, ConnectionResetError) as exc:
            failures.append(f"{address}: {exc.strerror or exc}")
            continue
        try:
            return address, connection.call(*target, member, signature, body)
        finally:
            connection.close()
    raise Unreachable("cannot reach systemd through " + "; nor through ".join(failures))
