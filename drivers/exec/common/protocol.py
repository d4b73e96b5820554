"""The framed protocol spoken on a container monitor's unix socket and on the start channel.

A frame is ``type`` (1 byte), ``length`` (4 bytes, big endian) and ``length`` payload bytes.
A client opens a connection with one HELLO frame saying what it wants:

- ``WAIT``: the monitor answers ``EXIT`` (payload: the decimal exit status) when the process
  has exited and all its output was logged.
- ``ATTACH``: the monitor answers ``ACK``, then sends ``STDOUT``/``STDERR`` frames of every
  output chunk written after the ``ACK`` (preceded, with the payload ``REPLAY``, by the frames
  of everything the run wrote before, while that stays under a bound), then ``EXIT``. The client may send ``STDIN``,
  ``CLOSE_STDIN`` and ``RESIZE`` (payload: height, width as two big-endian u16) frames.
- ``SIGNAL`` (payload: the decimal signal number): the monitor signals the container's first
  process unless it was already reaped, answers ``ACK`` and closes.
- ``RESIZE``: resize the pty, answers ``ACK`` (``ERROR`` without a tty).

The monitor's socket path is reached through ``/proc/self/fd/<dirfd>/`` so that long state
directories do not hit the 108-byte limit of unix socket addresses.
"""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

STDIN, STDOUT, STDERR = 0, 1, 2
CLOSE_STDIN = 3
RESIZE = 4
EXIT = 5
ACK = 6
ERROR = 7
WAIT = 8
ATTACH = 9
SIGNAL = 10
JSON = 11  # the start channel: one JSON document

HEADER = struct.Struct("!BI")
#: ``ATTACH`` payload asking for the output the run wrote before the attach, first
REPLAY = b"replay"
SOCKET_NAME = "monitor.sock"


def frame(kind: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes | None:
    """``n`` bytes, or None if the peer closed first."""
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> tuple[int, bytes] | None:
    header = recv_exact(sock, HEADER.size)
    if header is None:
        return None
    kind, length = HEADER.unpack(header)
    payload = recv_exact(sock, length) if length else b""
    if payload is None:
        return None
    return kind, payload


class FrameParser:
    """Incremental parsing of frames from a non-blocking stream."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER.size:
            kind, length = HEADER.unpack_from(self._buf)
            if len(self._buf) < HEADER.size + length:
                break
            frames.append((kind, self._buf[HEADER.size:HEADER.size + length]))
            self._buf = self._buf[HEADER.size + length:]
        return frames


def socket_address(exec_dir: Path) -> tuple[str, int]:
    """A short address for ``exec_dir/monitor.sock`` and the directory fd to close afterwards."""
    dirfd = os.open(exec_dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    return f"/proc/self/fd/{dirfd}/{SOCKET_NAME}", dirfd


def connect(exec_dir: Path) -> socket.socket:
    """Connect to the monitor of ``exec_dir``; OSError (ENOENT, ECONNREFUSED) if it is gone."""
    address, dirfd = socket_address(exec_dir)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(address)
    except BaseException:
        sock.close()
        raise
    finally:
        os.close(dirfd)
    return sock
