import json
import multiprocessing
import os

import pytest

from moorage.core.sdk.errors import ConfigError
from moorage.core.sdk.store import DaemonLock, atomic_write, read_json, remove_stale_temp_files, write_json, write_new


def test_atomic_write_replaces_and_sets_mode(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"a": 1})
    write_json(target, {"a": 2})
    assert read_json(target) == {"a": 2}
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def _writer(path, rounds):
    for i in range(rounds):
        atomic_write(path, json.dumps({"i": i, "pad": "x" * 50000}).encode())


def test_killed_writer_never_leaves_a_torn_file(tmp_path):
    target = tmp_path / "state.json"
    write_json(target, {"i": -1})
    seen = []
    for _ in range(5):
        proc = multiprocessing.get_context("fork").Process(target=_writer, args=(target, 10**6))
        proc.start()
        proc.join(0.2)
        os.kill(proc.pid, 9)
        proc.join()
        value = read_json(target)  # always complete JSON: the old or a new version, never torn
        assert set(value) == {"i", "pad"} or value == {"i": -1}
        seen.append(value["i"])
    assert max(seen) >= 0, "no round got as far as replacing the file: the test tested nothing"
    remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_failed_write_leaves_old_content(tmp_path, monkeypatch):
    target = tmp_path / "x"
    atomic_write(target, b"old")
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk on fire")))
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["x"]


def test_write_new_creates_and_never_overwrites(tmp_path):
    write_new(tmp_path / "config.json", b"{}\n")
    assert (tmp_path / "config.json").read_bytes() == b"{}\n"
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        write_new(tmp_path / "config.json", b"other")
    assert (tmp_path / "config.json").read_bytes() == b"{}\n"


def test_daemon_lock_is_exclusive(tmp_path):
    first = DaemonLock(tmp_path)
    first.acquire()
    second = DaemonLock(tmp_path)
    with pytest.raises(ConfigError, match=f"pid {os.getpid()}.*already using the root directory"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
