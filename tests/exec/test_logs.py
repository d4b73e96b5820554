"""core/logs.py: the JSON-lines container log shared by every exec driver."""

from __future__ import annotations

import json
import re
import stat

from moorage.core.logs import LogWriter, read_log, rfc3339nano

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


def test_missing_log_reads_empty(tmp_path):
    assert list(read_log(tmp_path / "nothing.log")) == []
