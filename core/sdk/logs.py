"""Container logs: one JSON object per output line, as Docker's ``json-file`` driver stores them.

Each line of ``<state_dir>/<id>-json.log`` is ``{"log": "<text>", "stream": "stdout"|"stderr",
"time": "<RFC3339Nano, UTC>"}``. A complete line keeps its ``\\n``. A line longer than
``MAX_LINE`` bytes is split as Docker's json-file driver splits it: pieces of ``MAX_LINE``
bytes (cut at a UTF-8 character boundary) logged without a trailing newline (the *partial*
convention: a reader joins entries until one ends with ``\\n``), then the last piece with its
newline. So whatever a container writes, the writer holds at most ``MAX_LINE`` bytes per
stream. A short line without its newline is held until the newline arrives and dropped if it
never does (``logs=1`` never replays it, as in Docker 0.6); the rest of a line that was already
split is logged at the end, so a split line is never cut short.

Bounds on disk (``LogRotation``, from the config's ``[logs]`` table): when the next entry
would take the file beyond ``max_size`` bytes, ``<log>`` is renamed ``<log>.1``, ``<log>.1``
``<log>.2``... and the oldest beyond ``max_files - 1`` rotated files is deleted, as Docker's
``max-size``/``max-file``. The writer renames under an exclusive ``flock`` of the current
file; ``open_log`` takes it shared while it opens the files, so a reader gets a consistent set.

The file is opened ``O_APPEND`` with mode 0600 at every start, so earlier runs are kept. Every
exec driver writes through ``LogWriter`` (in its monitor, outside the daemon); everything that
reads a log (attach's ``logs=1``, the logs endpoint) reads through ``read_log``, which streams
the rotated files and then the current one, oldest first, an entry at a time.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

STREAMS = ("stdout", "stderr")
#: Docker's split point: no entry carries more than this many bytes of output.
MAX_LINE = 16 * 1024
#: The longest line of a log file a reader accepts (a ``MAX_LINE`` piece, every byte escaped
#: as ``\\u00XX``, with the keys); a longer one is not ours and is skipped.
MAX_ENTRY = 8 * MAX_LINE
_OPEN_RETRIES = 100


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

    @property
    def partial(self) -> bool:
        """A piece of a longer line: the next entry of its stream continues it."""
        return not self.log.endswith("\n")


@dataclass(frozen=True)
class LogRotation:
    """``max_size``: bytes per file before it is rotated (0: never); ``max_files``: files kept,
    the current one included."""

    max_size: int = 100 << 20
    max_files: int = 5


@dataclass(frozen=True)
class LogPosition:
    """A place in a log: ``offset`` bytes into the file whose inode is ``inode``."""

    inode: int = 0
    offset: int = 0


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def _cut(data: bytearray | bytes, limit: int) -> int:
    """Where to cut ``data`` (longer than ``limit``) at most ``limit`` bytes in: before the
    character that byte ``limit`` belongs to, unless that is not UTF-8."""
    cut = limit
    while cut > limit - 3 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return limit if (data[cut] & 0xC0) == 0x80 else cut


class LogWriter:
    """Appends a container's stdout and stderr to its JSON log (see the module).

    ``write`` takes raw output chunks of one stream. Not thread-safe: one writer per
    container, in one thread.
    """

    def __init__(self, path: Path, rotation: LogRotation = LogRotation()) -> None:
        self.path = Path(path)
        self.rotation = rotation
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        self._pending = {name: bytearray() for name in STREAMS}
        #: whether the line held for a stream already had pieces logged
        self._split = dict.fromkeys(STREAMS, False)

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, stream: str, data: bytes) -> None:
        if stream not in self._pending:
            raise ValueError(f"unknown log stream {stream!r}")
        pending = self._pending[stream]
        entries: list[bytes] = []
        now = rfc3339nano()
        start = 0
        while (newline := data.find(b"\n", start)) >= 0:
            line = data[start:newline]
            if pending:
                line = bytes(pending) + line  # pending is below MAX_LINE: no quadratic copying
                pending.clear()
            while len(line) > MAX_LINE:
                cut = _cut(line, MAX_LINE)
                entries.append(self._entry(stream, line[:cut], now))
                line = line[cut:]
            entries.append(self._entry(stream, line + b"\n", now))
            self._split[stream] = False
            start = newline + 1
        pending += data[start:]
        while len(pending) > MAX_LINE:
            cut = _cut(pending, MAX_LINE)
            entries.append(self._entry(stream, bytes(pending[:cut]), now))
            del pending[:cut]
            self._split[stream] = True
        if entries:
            self._append(entries)

    @staticmethod
    def _entry(stream: str, text: bytes, now: str) -> bytes:
        return json.dumps({"log": text.decode("utf-8", "replace"), "stream": stream, "time": now}).encode() + b"\n"

    def _append(self, entries: list[bytes]) -> None:
        limit = self.rotation.max_size
        batch: list[bytes] = []
        size = self._size
        for entry in entries:
            if limit and size and size + len(entry) > limit:
                self._write_all(b"".join(batch))
                batch, size = [], 0
                self._rotate()
            batch.append(entry)
            size += len(entry)
        self._write_all(b"".join(batch))

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self._size += written

    def _rotate(self) -> None:
        """``<log>`` becomes ``<log>.1`` (and so on), under an exclusive lock of the current
        file that ``open_log`` respects; a new empty ``<log>`` follows."""
        keep = self.rotation.max_files - 1
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if keep <= 0:
                os.unlink(self.path)
            else:
                try:
                    os.unlink(rotated(self.path, keep))
                except FileNotFoundError:
                    pass
                for n in range(keep - 1, 0, -1):
                    try:
                        os.rename(rotated(self.path, n), rotated(self.path, n + 1))
                    except FileNotFoundError:
                        pass
                os.rename(self.path, rotated(self.path, 1))
            new = self._open()
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd, self._size = new, 0

    def close(self) -> None:
        """Close the file. The rest of a line that was split is logged; a short unterminated
        last line is dropped, as Docker 0.6 did."""
        if self._fd < 0:
            return
        entries = [self._entry(stream, bytes(self._pending[stream]), rfc3339nano())
                   for stream in STREAMS if self._split[stream] and self._pending[stream]]
        if entries:
            self._append(entries)
        os.close(self._fd)
        self._fd = -1


def log_position(path: Path) -> LogPosition:
    """Where the log ends now: ``read_log(since=...)`` gives what is written after it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return LogPosition()
    return LogPosition(st.st_ino, st.st_size)


def open_log(path: Path) -> list[BinaryIO]:
    """The files of a log, oldest first (``<log>.N`` ... ``<log>.1``, then ``<log>``), opened
    together while the writer cannot rotate them; the caller closes them. A missing log is []."""
    for _ in range(_OPEN_RETRIES):
        try:
            current = open(path, "rb")
        except FileNotFoundError:
            if not rotated(path, 1).exists():
                return []
            time.sleep(0.01)  # a rotation between its rename and the new file
            continue
        try:
            fcntl.flock(current, fcntl.LOCK_SH)
            try:
                if os.fstat(current.fileno()).st_ino != os.stat(path).st_ino:
                    current.close()  # rotated while we waited for the lock
                    continue
            except FileNotFoundError:
                current.close()
                continue
            older: list[BinaryIO] = []
            n = 1
            while True:
                try:
                    older.append(open(rotated(path, n), "rb"))
                except FileNotFoundError:
                    break
                n += 1
            fcntl.flock(current, fcntl.LOCK_UN)
        except BaseException:
            current.close()
            raise
        return [*reversed(older), current]
    raise OSError(f"the log {path} kept changing while it was opened")


class LogReader:
    """An iterator over a log's entries (``read_log``, ``follow_log``) whose files are opened
    when it is made, not at its first entry: a reader made before the log is deleted (the
    container's ``AutoRemove`` right after a short run) still reads it whole. Close it (or
    exhaust it) to close the files."""

    def __init__(self, path: Path, since: LogPosition | None,
                 select: Callable[[Iterator[tuple[LogEntry, LogPosition]]], Generator[Any, None, None]] | None = None
                 ) -> None:
        self._files = open_log(path)
        entries = _entries(self._files, since)
        self._items: Generator[Any, None, None] = entries if select is None else select(entries)

    def __iter__(self) -> LogReader:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._items)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._items.close()
        for f in self._files:
            f.close()


def read_log(path: Path, streams: tuple[str, ...] = STREAMS, since: LogPosition | None = None,
             until: LogPosition | None = None) -> LogReader:
    """The entries (``LogEntry``) of a log in order, every rotated file first, limited to
    ``streams``, after ``since`` and up to ``until`` (both from ``log_position``; what was
    rotated away is gone, and what was written after ``until`` is left out). Streams from disk:
    one line in memory at a time. A torn last line (a writer killed mid-write) is skipped."""
    return LogReader(path, since, lambda entries: _select(entries, streams, until))


def follow_log(path: Path, since: LogPosition | None = None) -> LogReader:
    """``read_log`` of every stream, each entry with the position just after it
    (``(LogEntry, LogPosition)``): a reader that polls a growing log passes the last one as
    ``since`` next time."""
    return LogReader(path, since)


def _select(entries: Iterator[tuple[LogEntry, LogPosition]], streams: tuple[str, ...],
            until: LogPosition | None) -> Generator[LogEntry, None, None]:
    in_until_file = False  # the file ``until`` points into has been reached
    for entry, position in entries:
        if until is not None:
            if position.inode == until.inode:
                in_until_file = True
                if position.offset > until.offset:
                    return
            elif in_until_file or not until.inode:  # a newer file, or there was no log then
                return
        if entry.stream in streams:
            yield entry


def _entries(files: list[BinaryIO], since: LogPosition | None
             ) -> Generator[tuple[LogEntry, LogPosition], None, None]:
    """The entries of ``files`` (``open_log``'s), each with the position after it; the caller
    closes the files."""
    inodes = [os.fstat(f.fileno()).st_ino for f in files]
    if since is not None and since.inode in inodes:
        first = inodes.index(since.inode)
        files[first].seek(since.offset)
        files, inodes = files[first:], inodes[first:]
    for f, inode in zip(files, inodes, strict=True):
        while raw := f.readline(MAX_ENTRY):
            if not raw.endswith(b"\n"):
                if len(raw) == MAX_ENTRY:  # not a line this module wrote: skip the rest of it
                    while (more := f.readline(MAX_ENTRY)) and not more.endswith(b"\n"):
                        pass
                    continue
                break  # a line still being written: read it next time
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("stream") in STREAMS:
                yield (LogEntry(str(obj.get("log", "")), obj["stream"], str(obj.get("time", ""))),
                       LogPosition(inode, f.tell()))
