"""The v1.6 JSON progress stream: objects written back to back, no separator (reference §5.4).

A streaming endpoint runs its blocking job in core's executor with a ``progress`` callback. The
HTTP answer starts with the job's first message: an error raised before that is an ordinary
HTTP error (status and plain text); after it, the status is already 200 and the error becomes
the stream's last object, ``{"error": msg, "errorDetail": {"message": msg}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO

from fastapi.responses import StreamingResponse

from ..core.errors import MoorageError, storage_full
from ..core.humanize import progress_text

log = logging.getLogger(__name__)

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


async def json_stream(kernel, job: Callable[[Callable[[dict], None]], Any]) -> StreamingResponse:
    """Run ``job(progress)`` in core's executor and stream what it reports as 1.6 JSON.

    ``job`` returns a final dict to send (or None). An exception before the first message is
    raised here (an HTTP error); after it, it becomes the stream's error object.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def progress(obj: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, obj)

    def run() -> None:
        try:
            final = job(progress)
            if final:
                progress(final)
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)
        except BaseException as exc:  # handed to the event loop, which reports it
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    kernel.submit_waiting(run)  # the job runs to completion even if the client goes away
    first = await queue.get()
    if isinstance(first, BaseException):
        raise first
    if first is _DONE:
        first = None

    async def body() -> AsyncIterator[bytes]:
        if first is None:
            return
        yield encode(first)
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                item = storage_full(item) or item
                if isinstance(item, MoorageError):
                    text = item.message
                else:
                    log.error("streamed job failed", exc_info=item)
                    text = f"{type(item).__name__}: {item}"
                yield error_message(text)
                return
            yield encode(item)

    return StreamingResponse(body(), media_type="application/json")
