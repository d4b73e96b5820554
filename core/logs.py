"""Container logs: one JSON object per complete output line, as Docker 0.7 stores them.

Each line of ``<state_dir>/<id>-json.log`` is ``{"log": "<line with its \\n>", "stream":
"stdout"|"stderr", "time": "<RFC3339Nano, UTC>"}``. Only complete lines are logged: output
without a trailing newline is held until its newline arrives and dropped if it never does
(``logs=1`` never replays it, as in Docker). The file is opened ``O_APPEND`` with mode 0600 at
every start, so earlier runs are kept. Every exec driver writes through ``LogWriter``; the API
replays with ``read_log``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STREAMS = ("stdout", "stderr")


def rfc3339nano(ns: int | None = None) -> str:
    """``2013-10-23T12:34:56.123456789Z`` for ``ns`` nanoseconds since the epoch (default: now).

    Like Go's RFC3339Nano, trailing zeros of the fraction are dropped (and the dot with them).
    """
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


@dataclass(frozen=True)
class LogEntry:
    log: str
    stream: str
    time: str


class LogWriter:
    """Appends complete lines of a container's stdout and stderr to its JSON log.

    ``write`` takes raw output chunks of one stream; partial lines are kept per stream until
    their newline arrives. Not thread-safe: one writer per container, in one thread.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._pending = {name: b"" for name in STREAMS}

    def write(self, stream: str, data: bytes) -> None:
        if stream not in self._pending:
            raise ValueError(f"unknown log stream {stream!r}")
        buffered = self._pending[stream] + data
        *lines, rest = buffered.split(b"\n")
        self._pending[stream] = rest
        if not lines:
            return
        now = rfc3339nano()
        out = b"".join(
            json.dumps({"log": line.decode("utf-8", "replace") + "\n", "stream": stream, "time": now}).encode() + b"\n"
            for line in lines
        )
        os.write(self._fd, out)

    def close(self) -> None:
        """Close the file; an unterminated last line is dropped, as Docker does."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def log_size(path: Path) -> int:
    """The log's current length: an offset for ``read_log`` to start a run's entries at."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def read_log(path: Path, streams: tuple[str, ...] = STREAMS, offset: int = 0) -> Iterator[LogEntry]:
    """The entries of a JSON log in order, limited to ``streams``, from byte ``offset`` (a line
    boundary, from ``log_size``); a missing file has none.

    A torn last line (a writer killed mid-write) is skipped.
    """
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return
    with f:
        f.seek(offset)
        for raw in f:
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if obj.get("stream") in streams:
                yield LogEntry(obj.get("log", ""), obj["stream"], obj.get("time", ""))
