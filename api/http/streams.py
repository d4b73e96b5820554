"""The v1.6 JSON progress stream: objects written back to back, no separator (reference §5.4).

A streaming endpoint runs its blocking job in core's executor with a ``progress`` callback. The
HTTP answer starts with the job's first message: an error raised before that is an ordinary
HTTP error (status and plain text); after it, the status is already 200 and the error becomes
the stream's last object, ``{"error": msg, "errorDetail": {"message": msg}}``. ``stream_job``
is that machinery for any encoding (the builder's plain-text output uses it too).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, TypeVar

from fastapi.responses import StreamingResponse

from moorage.core.kernel.pools import Executor
from moorage.core.sdk.errors import MoorageError, storage_full
from moorage.core.sdk.humanize import progress_text

log = logging.getLogger(__name__)
T = TypeVar("T")

#: the order Go's JSONMessage struct gave its fields
KEY_ORDER = ("status", "progress", "error", "id", "from", "time", "errorDetail")


def message(status: str = "", progress: str = "", error: str = "", id: str = "", from_: str = "",
            time: int = 0, error_detail: dict | None = None) -> bytes:
    """One stream object, keys in 1.6 order, empty ones omitted."""
    values = {"status": status, "progress": progress, "error": error, "id": id, "from": from_, "time": time,
              "errorDetail": error_detail}
    return encode({k: v for k, v in values.items() if v})


def encode(obj: dict) -> bytes:
    """Re-order a progress dict's keys as 1.6 did (unknown keys last) and drop empty ones."""
    ordered = {k: obj[k] for k in KEY_ORDER if obj.get(k)}
    ordered.update({k: v for k, v in obj.items() if k not in KEY_ORDER and v})
    return json.dumps(ordered, separators=(",", ":")).encode()


def error_message(text: str) -> bytes:
    return message(error=text, error_detail={"message": text})


class ProgressReader:
    """Wraps a readable stream and reports ``{"status": label, "progress": ...}`` every 512 kB
    (or every 1% of ``total`` when that is smaller) and at EOF."""

    def __init__(self, stream: BinaryIO, total: int, label: str, progress: Callable[[dict], None]) -> None:
        self._stream = stream
        self.total = total if total and total > 0 else 0
        self.label = label
        self._progress = progress
        self.read_bytes = 0
        self._last = 0
        every = 512 * 1024
        if self.total:
            every = max(1, min(every, self.total // 100))
        self._every = every
        self._done = False

    def read(self, n: int = -1) -> bytes:
        data = self._stream.read(n)
        self.read_bytes += len(data)
        if not data:
            self._done, at_eof = True, not self._done and self.read_bytes != self._last
        else:
            at_eof = False
        if at_eof or (data and self.read_bytes - self._last >= self._every):
            self._last = self.read_bytes
            self._progress({"status": self.label, "progress": progress_text(self.read_bytes, self.total)})
        return data


class BodyReader:
    """The request body as a blocking ``read(n)`` for a worker thread: each chunk is pulled from
    the event loop on demand, so a large upload streams straight into the job."""

    def __init__(self, chunks: AsyncIterator[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._chunks = chunks
        self._loop = loop
        self._buffer = bytearray()
        self._eof = False

    async def _next(self) -> bytes | None:
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return None

    def _fill(self, wanted: int) -> None:
        while not self._eof and (wanted < 0 or len(self._buffer) < wanted):
            chunk = asyncio.run_coroutine_threadsafe(self._next(), self._loop).result()
            if chunk is None:
                self._eof = True
            else:
                self._buffer += chunk
                if wanted >= 0:
                    break

    def read(self, n: int = -1) -> bytes:
        if not self._buffer:
            self._fill(n if n is not None else -1)
        if n is None or n < 0:
            self._fill(-1)
            n = len(self._buffer)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


class IterReader:
    """An iterator of byte chunks (an HTTP download) as a blocking ``read(n)``."""

    def __init__(self, chunks) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n is None or n < 0 or len(self._buffer) < n):
            try:
                self._buffer += next(self._chunks)
            except StopIteration:
                self._eof = True
            if n is not None and n >= 0 and self._buffer:
                break
        if n is None or n < 0:
            n = len(self._buffer)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


_DONE = object()


def error_text(exc: BaseException) -> str:
    """What a stream says of an error that ends it: a typed error's message (a full disk is
    ``StorageFull``), else the exception's type and text, with its traceback in the log."""
    exc = storage_full(exc) or exc
    if isinstance(exc, MoorageError):
        return exc.message
    log.error("streamed job failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


async def stream_job(executor: Executor, job: Callable[[Callable[[T], None]], Any], encode: Callable[[T], bytes],
                     encode_error: Callable[[BaseException], bytes], media_type: str,
                     early_error: Callable[[BaseException], BaseException] = lambda exc: exc) -> StreamingResponse:
    """Run ``job(emit)`` in core's executor (to its end, even if the client goes away) and
    stream ``encode(item)`` for each item it emits, as it emits it; a value ``job`` returns is
    emitted last.

    An exception before the first item is raised here as ``early_error(exc)`` (an HTTP
    error); after it, the status is already 200 and ``encode_error(exc)`` ends the stream.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def emit(item: T) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, item)

    def run() -> None:
        try:
            final = job(emit)
            if final:
                emit(final)
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)
        except BaseException as exc:  # handed to the event loop, which reports it
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    executor.submit_waiting(run)
    first = await queue.get()
    if isinstance(first, BaseException):
        raised = early_error(first)
        if raised is first:
            raise first
        raise raised from first

    async def body() -> AsyncIterator[bytes]:
        item = first
        while item is not _DONE:
            if isinstance(item, BaseException):
                yield encode_error(item)
                return
            yield encode(item)
            item = await queue.get()

    return StreamingResponse(body(), media_type=media_type)


async def json_stream(executor: Executor, job: Callable[[Callable[[dict], None]], Any]) -> StreamingResponse:
    """``stream_job`` in the 1.6 JSON progress stream: ``job(progress)`` reports dicts and may
    return a final one; an error after the first message is the stream's error object."""
    return await stream_job(executor, job, encode, lambda exc: error_message(error_text(exc)), "application/json")
