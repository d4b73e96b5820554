"""Blob transfer: verified streaming downloads that unpack as they go, and gzip for pushes."""

from __future__ import annotations

import hashlib
import http.client
import itertools
import os
import queue
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from moorage.core.sdk.errors import InvalidParameter, Unavailable
from moorage.core.sdk.hookspecs.registry import Progress
from moorage.core.sdk.humanize import progress_text
from moorage.core.sdk.validation import check_digest
from moorage.drivers.registry.v2.transport import MAX_DOCUMENT, Session, TooLarge, Transient

CHUNK = 1 << 20
GZIP_SLICE = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class DigestMismatch(Unavailable):
    """A blob's content does not match the digest that names it."""


class LayerTooLarge(TooLarge):
    """A layer unpacks to more than ``[registry.v2] max_layer_size``; not retried."""


class Cancelled(Exception):
    """The pull this download belongs to failed elsewhere; stop early."""


class Meter:
    """Sends ``status`` progress for one layer every 512 kB or 1%, whichever is smaller, and at
    the end."""

    def __init__(self, progress: Progress, status: str, short_id: str, total: int | None) -> None:
        self.progress, self.status, self.short_id, self.total = progress, status, short_id, total
        self.step = min(512 * 1024, max(1, (total or 0) // 100)) if total else 512 * 1024
        self.current = 0
        self._last = 0

    def reset(self) -> None:
        self.current = self._last = 0

    def add(self, n: int) -> None:
        self.current += n
        if self.current - self._last >= self.step:
            self._send()

    def done(self) -> None:
        if self.current != self._last or self.current == 0:
            self._send()

    def _send(self) -> None:
        self._last = self.current
        self.progress({"status": self.status, "progress": progress_text(self.current, self.total),
                       "id": self.short_id})


def serialized(progress: Progress) -> Progress:
    """A progress callback that worker threads may share."""
    lock = threading.Lock()

    def call(message: dict) -> None:
        with lock:
            progress(message)

    return call


def new_hash(digest: str) -> hashlib._Hash:
    algorithm, _, hexpart = digest.partition(":")
    if algorithm not in ("sha256", "sha512") or not hexpart:
        raise InvalidParameter(f"unsupported digest {digest!r}")
    return hashlib.new(algorithm)


def fetch_blob(session: Session, repository: str, digest: str, size: int | None = None) -> bytes:
    """A small blob (a config, a manifest) read whole, at most ``MAX_DOCUMENT`` bytes, and
    verified."""
    check_digest(digest)
    if size is not None and (not isinstance(size, int) or size > MAX_DOCUMENT):
        raise TooLarge(f"blob {digest} of {repository} is {size} bytes, more than the {MAX_DOCUMENT} allowed")

    def get() -> bytes:
        response = session.send("GET", f"/v2/{repository}/blobs/{digest}")
        session.check(response, f"blob {digest} of {repository}")
        return response.content

    data = session.with_retries(f"download of {digest}", get)
    verify(data, digest, size)
    return data


def verify(data: bytes, digest: str, size: int | None = None) -> None:
    h = new_hash(digest)
    h.update(data)
    got = f"{digest.partition(':')[0]}:{h.hexdigest()}"
    if got != digest or (size is not None and size != len(data)):
        raise DigestMismatch(f"blob {digest} failed verification (got {got}, {len(data)} bytes)")


@dataclass
class LayerFile:
    """A downloaded layer: ``path`` holds the uncompressed tar, verified against ``diff_id``."""

    path: Path
    size: int


class _IterFile:
    """A readable file over an iterator of byte chunks (the source of zstd's stream reader)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer = chunks, b""

    def read(self, size: int = -1) -> bytes:
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer = chunk
        if size < 0:
            size = len(self._buffer)
        out, self._buffer = self._buffer[:size], self._buffer[size:]
        return out


def unpack(chunks: Iterator[bytes], limit: int = CHUNK) -> Iterator[bytes]:
    """The uncompressed bytes of a layer blob's chunks: gzip (any number of members), zstd (any
    number of frames) or a plain tar, told apart by their magic. Pieces are at most ``limit``
    bytes (a plain tar's as they came): the decompressors stop there and keep the rest of their
    input, so a bomb never expands in memory beyond one piece."""
    first = next(chunks, None)
    if first is None:
        return
    stream = itertools.chain([first], chunks)
    if first.startswith(ZSTD_MAGIC):
        reader = zstandard.ZstdDecompressor().stream_reader(_IterFile(stream), read_across_frames=True)
        while data := reader.read(limit):
            yield data
        return
    if not first.startswith(GZIP_MAGIC):
        yield from stream
        return
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in stream:
        # fed in slices: what a full output leaves unconsumed is copied, so keep it small
        for start in range(0, len(chunk), GZIP_SLICE):
            data = chunk[start:start + GZIP_SLICE]
            while data:
                out = d.decompress(data, limit)
                if out:
                    yield out
                if d.eof:
                    data = d.unused_data
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    data = d.unconsumed_tail
    while out := d.decompress(b"", limit):  # what a full output left pending
        yield out
    if tail := d.flush():
        yield tail


class _Reader:
    """Reads a response on a thread of its own, hashing every chunk, and hands the chunks over
    through a small queue; iterating re-raises the reader's exception."""

    _END = object()

    def __init__(self, response, hasher, cancelled: threading.Event | None, digest: str) -> None:
        self._response, self._hasher, self._cancelled, self._digest = response, hasher, cancelled, digest
        self._queue: queue.Queue = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="moorage-blob-reader", daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            total = 0
            while chunk := self._response.read(CHUNK):
                if self._cancelled is not None and self._cancelled.is_set():
                    raise Cancelled(self._digest)
                self._hasher.update(chunk)
                total += len(chunk)
                if not self._put(chunk):
                    return
            # http.client returns a short body silently when the connection drops
            expected = self._response.getheader("content-length")
            if expected is not None and total < int(expected):
                raise http.client.IncompleteRead(b"", int(expected) - total)
            self._put(self._END)
        except BaseException as exc:
            self._put(exc)

    def __iter__(self):
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        # normally the reader has finished; after a failure here it stops at its next chunk,
        # and a reader stuck on a silent connection is cut off by closing the response
        self._thread.join(timeout=1.0)
        self._response.close()


def download_layer(session: Session, repository: str, digest: str, size: int | None, diff_id: str,
                   dest: Path, meter: Meter, cancelled: threading.Event | None = None,
                   max_size: int = 10 << 30) -> LayerFile:
    """Stream blob ``digest`` into ``dest`` as an uncompressed tar, verifying the compressed
    bytes against ``digest`` and the tar against ``diff_id``. A connection lost mid-stream
    starts the blob again. More than ``max_size`` uncompressed bytes raise ``LayerTooLarge``
    as soon as they are reached. On failure ``dest`` is removed."""
    check_digest(digest)
    check_digest(diff_id)

    def attempt() -> LayerFile:
        meter.reset()
        compressed, uncompressed = new_hash(digest), new_hash(diff_id)
        received = written = 0
        response = session.stream_get(f"/v2/{repository}/blobs/{digest}")
        # two stages on two threads (hashing, zlib, sockets and files release the GIL): this
        # one unpacks, hashes and writes what the reader thread received and hashed
        chunks = _Reader(response, compressed, cancelled, digest)

        def counted() -> Iterator[bytes]:
            nonlocal received
            for chunk in chunks:
                received += len(chunk)
                meter.add(len(chunk))
                yield chunk

        try:
            with open(dest, "wb") as out:
                for data in unpack(counted()):
                    written += len(data)
                    if written > max_size:
                        raise LayerTooLarge(f"layer {digest} of {repository} unpacks to more than {max_size} "
                                            "bytes ([registry.v2] max_layer_size)")
                    uncompressed.update(data)
                    out.write(data)
        except (zlib.error, zstandard.ZstdError) as exc:
            raise DigestMismatch(f"layer {digest} is not a valid compressed stream: {exc}") from None
        finally:
            chunks.close()
        got = f"{digest.partition(':')[0]}:{compressed.hexdigest()}"
        if got != digest or (size is not None and received != size):
            raise DigestMismatch(f"layer {digest} failed verification (got {got}, {received} bytes)")
        got = f"{diff_id.partition(':')[0]}:{uncompressed.hexdigest()}"
        if got != diff_id:
            raise DigestMismatch(f"layer {digest} unpacks to {got}, but the image config says {diff_id}")
        meter.done()
        return LayerFile(dest, written)

    try:
        return session.with_retries(f"download of {digest}", attempt)
    except BaseException:
        try:
            os.unlink(dest)
        except FileNotFoundError:
            pass
        raise


@dataclass
class CompressedLayer:
    diff_id: str
    digest: str
    size: int
    path: Path


def compress_layer(chunks: Iterable[bytes], dest: Path, level: int) -> CompressedLayer:
    """Gzip a layer tar into ``dest`` (no timestamp, so the same tar gives the same digest)."""
    plain, packed = hashlib.sha256(), hashlib.sha256()
    compressor = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    size = 0
    with open(dest, "wb") as out:
        for chunk in chunks:
            plain.update(chunk)
            data = compressor.compress(chunk)
            if data:
                packed.update(data)
                out.write(data)
                size += len(data)
        data = compressor.flush()
        packed.update(data)
        out.write(data)
        size += len(data)
    return CompressedLayer(f"sha256:{plain.hexdigest()}", f"sha256:{packed.hexdigest()}", size, dest)


def upload_blob(session: Session, repository: str, digest: str, size: int, open_body, meter: Meter | None = None,
                ) -> None:
    """POST an upload session, then PUT the whole body with its digest (distribution 2.8 does
    not take a monolithic POST). ``open_body()`` gives a fresh binary file for each attempt."""

    def attempt() -> None:
        response = session.send("POST", f"/v2/{repository}/blobs/uploads/")
        session.check(response, f"upload to {repository}", ok=(202,))
        location = response.headers.get("location")
        if not location:
            raise Transient(response)
        separator = "&" if "?" in location else "?"
        if meter is not None:
            meter.reset()

        def body():
            f: BinaryIO = open_body()

            def chunks():
                with f:
                    while data := f.read(CHUNK):
                        if meter is not None:
                            meter.add(len(data))
                        yield data

            return chunks()

        response = session.send("PUT", f"{location}{separator}digest={digest}", body=body,
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(size)})
        session.check(response, f"upload of {digest} to {repository}", ok=(201, 204))
        if meter is not None:
            meter.done()

    session.with_retries(f"upload of {digest}", attempt)
