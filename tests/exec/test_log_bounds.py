"""A container writing one line of ``MOORAGE_LOG_BOUNDS_MIB`` MiB (256 in the suite) without a
newline, through a real daemon, once per exec driver: the monitor's and the daemon's memory
stay bounded, the log holds 16 KiB pieces, and the files rotate within ``[logs]
max-size``/``max-file``.

256 MiB is more than every bound checked here (a monitor that kept the line would pass
``MONITOR_RSS_BOUND``; the files written exceed ``max-size * max-file``, so they rotate; a
daemon that read the replayed log into memory would pass ``DAEMON_GROWTH_BOUND``), so the
suite's run proves the bounds. ``bench/log_bounds.py`` runs it with 1 GiB and prints the
figures that go to docs/benchmarks.md."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import CONTAINER_CONFIG, eventually, import_image

from moorage.core.sdk.logs import MAX_LINE, read_log, rotated

MIB = 1 << 20
#: the line's length: 256 MiB in the suite, 1024 for bench/log_bounds.py
LINE_MIB = int(os.environ.get("MOORAGE_LOG_BOUNDS_MIB", "256"))
MAX_SIZE, MAX_FILE = 32 * MIB, 3
#: Generous: a monitor is a forked Python process of a few tens of MiB; before the bounds it
#: grew with the line (and copied it again on every read).
MONITOR_RSS_BOUND = 160 * MIB
#: What replaying the whole log (about ``MAX_SIZE * MAX_FILE``) may add to the daemon's peak.
DAEMON_GROWTH_BOUND = 48 * MIB

# 1 MiB of 'x' (JSON-escaping NUL bytes would make the test measure json.dumps), then written
# LINE_MIB times with no newline, then the line ends and a marker follows
SCRIPT = ("head -c 1048576 /dev/zero | tr '\\000' x > /tmp/mb; i=0; "
          f"while [ $i -lt {LINE_MIB} ]; do cat /tmp/mb; i=$((i+1)); done; echo; echo DONE; sleep 1000")


def test_the_line_is_longer_than_every_bound():
    """Else a run with a shorter line would pass whether or not the bounds hold."""
    assert LINE_MIB * MIB > MONITOR_RSS_BOUND
    assert LINE_MIB * MIB > MAX_SIZE * MAX_FILE > DAEMON_GROWTH_BOUND


def status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def writers_of(path: Path) -> list[int]:
    """The processes holding ``path`` open: the container's monitor."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                    found.append(int(pid))
                    break
        except OSError:
            continue
    return found


def tail_has(path: Path, needle: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            return needle in f.read()
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def log_daemon(tmp_path_factory, busybox_tar, exec_driver):
    from conftest import Daemon

    base = tmp_path_factory.mktemp(f"logs-{exec_driver}")
    config = CONTAINER_CONFIG.format(graph="overlay", exec=exec_driver)
    with Daemon(base, config + f'[logs]\nmax-size = "{MAX_SIZE // MIB}m"\nmax-file = {MAX_FILE}\n').start() as d:
        import_image(d, busybox_tar)
        yield d


def test_a_long_line_without_newline(log_daemon, exec_driver, record_property):
    with log_daemon.client(timeout=600) as api:
        made = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["sh", "-c", SCRIPT]})
        assert made.status_code == 201, made.text
        cid = made.json()["Id"]
        full = api.get(f"/containers/{cid}/json").json()["ID"]
        log = log_daemon.root / "containers" / full / f"{full}-json.log"
        assert api.post(f"/containers/{cid}/start").status_code == 204

        def written() -> bool:
            done = tail_has(log, b'"DONE\\n"')
            assert done or api.get(f"/containers/{cid}/json").json()["State"]["Running"]
            return done

        eventually(written, f"the container to write its {LINE_MIB} MiB", 900)
        [monitor] = writers_of(log)
        monitor_peak = status_kib(monitor, "VmHWM") * 1024
        # the files on disk: rotated, each within max-size, and no more of them than max-file
        files = sorted(p for p in log.parent.iterdir() if p.name.startswith(log.name))
        assert [p.name for p in files] == [log.name] + [rotated(log, n).name for n in range(1, MAX_FILE)]
        assert all(p.stat().st_size <= MAX_SIZE for p in files)
        entries = list(read_log(log))
        assert entries[-1].log == "DONE\n" and entries[-2].log.endswith("x\n")
        pieces = entries[:-1]
        assert all(len(e.log.rstrip("\n")) <= MAX_LINE for e in pieces)
        assert sum(e.partial for e in pieces) >= len(pieces) - 1  # the long line, in pieces
        assert {e.log.rstrip("\n") for e in pieces} == {"x" * len(e.log.rstrip("\n")) for e in pieces}
        del entries, pieces

        # the daemon replays the whole log (rotated files included) for attach?logs=1
        daemon_pid = log_daemon.proc.pid
        with open(f"/proc/{daemon_pid}/clear_refs", "w") as f:
            f.write("5")  # reset the peak
        before = status_kib(daemon_pid, "VmRSS") * 1024
        received = 0
        with api.stream("POST", f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1}) as answer:
            for chunk in answer.iter_raw():
                received += len(chunk)
        daemon_growth = status_kib(daemon_pid, "VmHWM") * 1024 - before
        on_disk = sum(p.stat().st_size for p in files)
        assert received > MAX_SIZE  # more than the current file: the rotated ones came too
        api.post(f"/containers/{cid}/kill")
    figures = (f"{exec_driver}: {LINE_MIB} MiB; monitor peak RSS {monitor_peak / MIB:.1f} MiB; "
               f"daemon peak growth replaying {on_disk / MIB:.0f} MiB of log: {daemon_growth / MIB:.1f} MiB")
    record_property("figures", figures)
    print(figures)
    assert monitor_peak < MONITOR_RSS_BOUND, figures
    assert daemon_growth < DAEMON_GROWTH_BOUND, figures
