"""The v1.6 JSON progress stream helpers (api/http/streams.py)."""

from __future__ import annotations

import io

from moorage.api.http.streams import IterReader, ProgressReader, encode, error_message, message
from moorage.core.sdk.humanize import human_size, progress_text


def test_keys_in_go_order_compact_and_empty_ones_omitted():
    assert encode({"id": "abc", "progress": "", "status": "Pulling", "time": 0}) == b'{"status":"Pulling","id":"abc"}'
    assert message(status="Downloading", progress="1/? (n/a)", id="x") == \
        b'{"status":"Downloading","progress":"1/? (n/a)","id":"x"}'
    assert error_message("boom") == b'{"error":"boom","errorDetail":{"message":"boom"}}'


def test_human_sizes_and_progress_text():
    assert human_size(0) == "0 B" and human_size(999) == "999 B" and human_size(1024) == "1.024 kB"
    assert human_size(10_240_000) == "10.24 MB" and human_size(3 * 10**12) == "3 TB"
    assert progress_text(1_024_000, 10_240_000) == "1.024 MB/10.24 MB (10%)"  # Go's %8v pads to 8
    assert progress_text(1000, 10_000) == "    1 kB/10 kB (10%)"
    assert progress_text(12345, 0) == "   12345/? (n/a)"


def test_progress_reader_reports_every_percent_and_at_eof():
    seen: list[dict] = []
    data = bytes(10_000)
    reader = ProgressReader(io.BytesIO(data), len(data), "Importing", seen.append)
    while reader.read(50):
        pass
    assert reader.read_bytes == len(data)
    assert len(seen) == 100  # every 1% of 10,000 bytes, the last at EOF
    assert seen[-1] == {"status": "Importing", "progress": "   10 kB/10 kB (100%)"}
    assert reader.read(50) == b"" and len(seen) == 100  # EOF is reported once


def test_progress_reader_without_total_reports_every_512k():
    seen: list[dict] = []
    reader = ProgressReader(IterReader([bytes(256 * 1024)] * 5), 0, "Importing", seen.append)
    while reader.read(1 << 20):
        pass
    assert [m["progress"] for m in seen] == ["  524288/? (n/a)", " 1048576/? (n/a)", " 1310720/? (n/a)"]
