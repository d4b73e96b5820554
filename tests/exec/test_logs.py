"""core/sdk/logs.py: the JSON-lines container log shared by every exec driver (its bounds under a
real container: tests/exec/test_log_bounds.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import threading
from pathlib import Path

import pytest

from moorage.core.sdk.hookspecs.exec import Stream
from moorage.core.sdk.logs import (
    MAX_LINE,
    LogPosition,
    LogRotation,
    LogWriter,
    follow_log,
    log_position,
    open_log,
    read_log,
    rfc3339nano,
    rotated,
)
from moorage.core.services.runner import LogAttachment

RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def test_rfc3339nano_trims_trailing_zeros():
    assert rfc3339nano(1_382_531_696_123_456_789) == "2013-10-23T12:34:56.123456789Z"
    assert rfc3339nano(1_382_531_696_120_000_000) == "2013-10-23T12:34:56.12Z"
    assert rfc3339nano(1_382_531_696_000_000_000) == "2013-10-23T12:34:56Z"
    assert RFC3339NANO.match(rfc3339nano())


def test_complete_lines_only_per_stream(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path)
    writer.write("stdout", b"hel")
    writer.write("stderr", b"oops\npart")
    writer.write("stdout", b"lo\nworld\nunfinished")
    writer.close()
    raw = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["stream"], r["log"]) for r in raw] == [
        ("stderr", "oops\n"), ("stdout", "hello\n"), ("stdout", "world\n")]
    assert all(set(r) == {"log", "stream", "time"} and RFC3339NANO.match(r["time"]) for r in raw)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_appends_across_runs_and_filters_streams(tmp_path):
    path = tmp_path / "c-json.log"
    for text in (b"first\n", b"second\n"):
        writer = LogWriter(path)
        writer.write("stdout", text)
        writer.write("stderr", b"e" + text)
        writer.close()
    assert [e.log for e in read_log(path)] == ["first\n", "efirst\n", "second\n", "esecond\n"]
    assert [e.log for e in read_log(path, ("stderr",))] == ["efirst\n", "esecond\n"]


def test_invalid_utf8_and_torn_last_line(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path)
    writer.write("stdout", b"\xff\xfe ok\n")
    writer.close()
    with open(path, "ab") as f:
        f.write(b'{"log": "torn')  # a writer killed mid-line
    (entry,) = read_log(path)
    assert entry.log == "\ufffd\ufffd ok\n" and entry.stream == "stdout"


def test_readers_made_before_the_log_is_deleted_read_it_whole(tmp_path):
    """A run that ended before its waiting attach connected is read from the log, and the
    container's AutoRemove may delete it first: ``docker run --rm`` printed nothing now and
    then with the lxc driver (whose start returns once the command runs, often after it ended)."""
    directory = tmp_path / "container"
    directory.mkdir()
    path = directory / "c-json.log"
    writer = LogWriter(path, LogRotation(max_size=200, max_files=3))
    for i in range(6):
        writer.write("stdout", f"line {i} of the run\n".encode())
    writer.close()
    assert rotated(path, 1).exists(), "the reader must keep the rotated files too"
    expected = [f"line {i} of the run\n" for i in range(6)]
    kept = [e.log for e in read_log(path)]
    assert kept[-1] == expected[-1] and len(kept) >= 4
    readers = [read_log(path), follow_log(path), LogAttachment(path, None)]
    shutil.rmtree(directory)  # the removal, between the reader's making and its reading
    assert [e.log for e in readers[0]] == kept
    assert [e.log for e, _ in readers[1]] == kept
    attached = []
    while (item := readers[2].read()) is not None:
        attached.append(item)
    readers[2].close()
    assert attached == [(Stream.STDOUT, text.encode()) for text in kept]


def test_a_reader_closed_unread_closes_its_files(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path)
    writer.write("stdout", b"one\n")
    writer.close()

    def open_on_log() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))

    reader = read_log(path)
    assert open_on_log() == 1, "opened when made"
    reader.close()
    assert open_on_log() == 0


def test_missing_log_reads_empty(tmp_path):
    assert list(read_log(tmp_path / "nothing.log")) == []


# -- long lines, rotation, positions ------------------------------------------------------------


def joined(entries) -> list[str]:
    """Lines as a reader joins partial entries back together."""
    lines, current = [], ""
    for entry in entries:
        current += entry.log
        if not entry.partial:
            lines.append(current)
            current = ""
    return lines + ([current] if current else [])


def test_long_lines_are_split_as_docker_does(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path)
    writer.write("stdout", b"x" * MAX_LINE + b"\n")  # exactly the limit: one entry
    line = b"y" * (3 * MAX_LINE + 5)
    for n in range(0, len(line), 1000):  # arriving in pieces
        writer.write("stdout", line[n:n + 1000])
    writer.write("stdout", b"\nafter\n")
    writer.close()
    entries = list(read_log(path))
    assert [len(e.log) for e in entries] == [MAX_LINE + 1, MAX_LINE, MAX_LINE, MAX_LINE, 6, 6]
    assert [e.partial for e in entries] == [False, True, True, True, False, False]
    assert joined(entries) == ["x" * MAX_LINE + "\n", line.decode() + "\n", "after\n"]


def test_split_keeps_utf8_characters_whole(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path)
    text = ("é" * MAX_LINE).encode()  # two bytes each: the cut falls inside one unless avoided
    writer.write("stdout", b"a" + text + b"\n")
    writer.close()
    entries = list(read_log(path))
    assert all("\ufffd" not in e.log for e in entries)
    assert joined(entries) == ["a" + "é" * MAX_LINE + "\n"]


def test_unterminated_output_memory_is_bounded_and_its_rest_kept(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path, LogRotation(max_size=0))
    chunk = b"z" * 65536
    for _ in range(512):  # 32 MiB without a newline
        writer.write("stderr", chunk)
        assert len(writer._pending["stderr"]) <= MAX_LINE
    writer.write("stdout", b"short and unterminated")
    writer.close()
    entries = list(read_log(path))
    assert sum(len(e.log) for e in entries if e.stream == "stderr") == 512 * 65536  # nothing lost
    assert all(len(e.log) <= MAX_LINE for e in entries)
    assert [e for e in entries if e.stream == "stdout"] == []  # a short unfinished line: dropped


def test_rotation_keeps_max_files_and_reads_in_order(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path, LogRotation(max_size=4096, max_files=3))
    for i in range(2000):
        writer.write("stdout", f"line {i}\n".encode())
    writer.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    assert all(p.stat().st_size <= 4096 for p in tmp_path.iterdir())
    numbers = [int(e.log.split()[1]) for e in read_log(path)]
    assert numbers == list(range(numbers[0], 2000)) and numbers[0] > 0  # the oldest went
    # one file only: the current one is dropped at each rotation
    single = tmp_path / "single" / "c-json.log"
    single.parent.mkdir()
    writer = LogWriter(single, LogRotation(max_size=4096, max_files=1))
    for i in range(2000):
        writer.write("stdout", f"line {i}\n".encode())
    writer.close()
    assert [p.name for p in single.parent.iterdir()] == ["c-json.log"]
    assert [e.log for e in read_log(single)][-1] == "line 1999\n"


def test_positions_survive_rotation(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path, LogRotation(max_size=4096, max_files=3))
    writer.write("stdout", b"before\n")
    mark = log_position(path)
    for i in range(100):
        writer.write("stdout", f"run {i}\n".encode())
    writer.close()
    assert rotated(path, 1).exists()
    assert [e.log for e in read_log(path, since=mark)] == [f"run {i}\n" for i in range(100)]
    assert list(read_log(path, since=log_position(path))) == []


def test_readers_see_whole_entries_while_the_writer_rotates(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path, LogRotation(max_size=8192, max_files=4))
    done = threading.Event()

    def write() -> None:
        for i in range(20000):
            writer.write("stdout", f"{i}\n".encode())
        writer.close()
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    reads = 0
    while not done.is_set() or reads == 0:
        numbers = [int(e.log) for e in read_log(path)]
        # a consistent set of files: consecutive numbers, no gap and no repeat
        assert numbers == list(range(numbers[0], numbers[0] + len(numbers))) if numbers else True
        reads += 1
    thread.join()
    for f in open_log(path):
        f.close()


def test_follow_resumes_across_rotation_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "c-json.log"
    writer = LogWriter(path, LogRotation(max_size=4096, max_files=50))
    seen, position = [], LogPosition()

    def poll(since: LogPosition) -> LogPosition:
        for entry, after in follow_log(path, since):
            seen.append(entry.log)
            since = after
        return since

    for i in range(300):
        writer.write("stdout", f"{i}\n".encode())
        if i % 7 == 0:
            position = poll(position)
    writer.close()
    with open(path, "ab") as f:
        f.write(b'{"log": "half')  # a line still being written is not consumed
    position = poll(position)
    assert seen == [f"{i}\n" for i in range(300)] and rotated(path, 1).exists()


def test_logs_config_section(tmp_path):
    from moorage.core.kernel.config import ConfigError, load

    assert (load(None).logs.max_size, load(None).logs.max_file) == (100 << 20, 5)
    path = tmp_path / "daemon.toml"
    path.write_text('[logs]\nmax-size = "10m"\nmax-file = 2\n')
    logs = load(path).logs
    assert (logs.max_size, logs.max_file) == (10 << 20, 2)  # binary units, as Docker's max-size
    for bad in ('max-size = "lots"', "max-file = 0", 'max-size = "1k"', "maxsize = 1"):
        path.write_text(f"[logs]\n{bad}\n")
        with pytest.raises(ConfigError, match="logs"):
            load(path)
