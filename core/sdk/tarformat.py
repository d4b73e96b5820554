"""The tar format as moorage reads and writes it: the whiteout names, compression detected
by its magic bytes, entry names made relative to the target, and a file object over chunks.
``moorage.core.sdk.archive`` describes the whole and re-exports every name."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from moorage.core.sdk.untrusted_tree import entry_parts, remove_at

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
XATTR_PAX_PREFIX = "SCHILY.xattr."
OVERLAY_XATTR_PREFIX = "trusted.overlay."
OVERLAY_OPAQUE_XATTR = OVERLAY_XATTR_PREFIX + "opaque"

#: bytes read or written at a time
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
_MAGICS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


# -- compression ------------------------------------------------------------------------------
def detect_compression(head: bytes) -> str:
    """``"gzip"``, ``"bzip2"``, ``"xz"`` or ``"none"`` from the first bytes of a stream."""
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    return "none"


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (to sniff them) and are served again."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """Wrap ``stream`` so that reading it gives the uncompressed tar, whatever its compression."""
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    raw = io.BufferedReader(_Prefixed(head, stream), CHUNK)
    kind = detect_compression(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb")  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


# -- paths ------------------------------------------------------------------------------------
def clean_name(name: str) -> str:
    """An archive entry name as a relative path inside the target ('' is the target itself).

    Raises ``InvalidParameter`` for a NUL byte or a ``..`` that climbs above the target.
    """
    return "/".join(entry_parts(name))


def remove_path(path: str | Path) -> None:
    """Remove a file, symlink or whole directory tree (never following a symlink inside it);
    a missing path is fine."""
    parent = os.open(os.path.dirname(os.fspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_at(parent, os.path.basename(os.fspath(path)))
    finally:
        os.close(parent)


def whiteout_name(rel: str, name: str | None = None) -> str:
    """The ``.wh.`` entry name deleting ``rel`` (or marking dir ``rel`` opaque with ``name``)."""
    parent, _, base = rel.strip("/").rpartition("/")
    entry = name if name is not None else WHITEOUT_PREFIX + base
    return f"{parent}/{entry}" if parent else entry



class IterStream(io.RawIOBase):
    """A readable file object over an iterator of byte chunks (a diff fed to ``apply_diff``)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        view = memoryview(buffer)
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

