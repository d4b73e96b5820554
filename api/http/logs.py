"""``GET /containers/{id}/logs`` (beyond 1.6: Docker 0.10's endpoint, which today's ``docker
logs`` calls): ``stdout``, ``stderr``, ``follow``, ``tail``, ``since``, ``timestamps``.

Output is framed as attach frames it: a container without a tty gets the 8-byte multiplexing
header on each entry, one with a tty the raw bytes. ``follow`` keeps the answer open and sends
new entries as they are logged, until the container's run ends (or the client goes).

The log is read through ``moorage.core.sdk.logs``, the one module that knows how it is stored.
"""

from __future__ import annotations

import calendar
import struct
import time
from collections import deque
from collections.abc import Iterator

from fastapi import Request
from fastapi.responses import StreamingResponse

from moorage.api.http.containers import ContainersDep, stream_chunks
from moorage.api.http.params import KernelDep, query_bool
from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.logs import LogEntry, LogPosition, follow_log
from moorage.core.services.containers import Container

FOLLOW_POLL = 0.1  # seconds between looks at a followed log that has nothing new


def log_entries(container: Container, follow: bool) -> Iterator[LogEntry | None]:
    """The container's log entries in order (``moorage.core.sdk.logs.follow_log``: rotated
    files first, under the writer's lock), then None (the end of what was logged when it was
    called); with ``follow``, then the entries written later, until its run has ended and
    everything it wrote is read."""
    position: LogPosition | None = None
    marked = False
    while True:
        # the exit is recorded only after the whole output is logged: read once more after it
        ended = not follow or container.exited.is_set()
        reader = follow_log(container.log_path, position)
        try:
            for entry, after in reader:
                position = after
                yield entry
        finally:
            reader.close()
        if not marked:
            marked = True
            yield None
        if ended:
            return
        time.sleep(FOLLOW_POLL)


def parse_since(value: str) -> float:
    """``since``: unix seconds, possibly with a fraction (``1700000000.123456789``)."""
    if not value:
        return 0.0
    try:
        return float(value)
    except ValueError:
        raise InvalidParameter(f"Bad parameter: since={value!r} is not a unix time") from None


def entry_time(stamp: str) -> float:
    """Seconds since the epoch of an RFC3339Nano UTC stamp; 0 if unreadable."""
    try:
        whole, _, frac = stamp.rstrip("Z").partition(".")
        return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float(f"0.{frac or 0}")
    except ValueError:
        return 0.0


def parse_tail(value: str) -> int | None:
    """``tail``: ``all`` (or empty) for everything, else a number of entries."""
    if value in ("", "all"):
        return None
    if not value.isdigit():
        raise InvalidParameter(f"Bad parameter: tail={value!r}: want a number or all")
    return int(value)


def frames(entries: Iterator[LogEntry | None], streams: set[str], tty: bool, timestamps: bool, since: float,
           tail: int | None) -> Iterator[bytes]:
    """The answer's bytes; ``tail`` counts back from the end of what was logged when the
    request came (the ``None`` that ``log_entries`` yields there)."""
    def encode(entry: LogEntry) -> bytes:
        data = (f"{entry.time} " if timestamps else "").encode() + entry.log.encode()
        if tty:
            return data
        return struct.pack(">BxxxI", 2 if entry.stream == "stderr" else 1, len(data)) + data

    kept: deque[LogEntry] | None = deque(maxlen=tail) if tail is not None else None
    for entry in entries:
        if entry is None:
            if kept is not None:
                yield from (encode(e) for e in kept)
                kept = None
            continue
        if entry.stream not in streams or (since and entry_time(entry.time) <= since):
            continue
        if kept is not None:
            if tail:
                kept.append(entry)
            continue
        yield encode(entry)


async def logs(name: str, request: Request, kernel: KernelDep, containers: ContainersDep) -> StreamingResponse:
    container = await kernel.run_blocking(containers.get, name)
    streams = {s for s in ("stdout", "stderr") if query_bool(request, s)}
    if not streams:
        raise InvalidParameter("Bad parameter: you must choose at least one stream (stdout=1 or stderr=1)")
    q = request.query_params
    follow = query_bool(request, "follow")
    body = frames(log_entries(container, follow), streams, bool(container.config.tty),
                  query_bool(request, "timestamps"), parse_since(q.get("since", "")), parse_tail(q.get("tail", "")))
    media = "application/vnd.docker.raw-stream" if container.config.tty else \
        "application/vnd.docker.multiplexed-stream"
    return StreamingResponse(stream_chunks(kernel, body), media_type=media)
