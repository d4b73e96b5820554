"""`docker logs`: stdout/stderr apart, --tail, --since, -t, -f follows until the container ends."""

from __future__ import annotations

import time


def test_logs_separates_streams_and_tails(cli):
    name = cli.name()
    cli("run", "--name", name, "busybox", "sh", "-c", "for i in 1 2 3 4; do echo out$i; echo err$i >&2; done")
    done = cli("logs", name)
    assert done.stdout == "out1\nout2\nout3\nout4\n" and done.stderr == "err1\nerr2\nerr3\nerr4\n"
    done = cli("logs", "--tail", "2", name)
    assert len((done.stdout + done.stderr).splitlines()) == 2  # the two streams' order is the log's
    only_out = cli.name()
    cli("run", "--name", only_out, "busybox", "sh", "-c", "for i in 1 2 3 4; do echo line$i; done")
    assert cli("logs", "--tail", "2", only_out).stdout == "line3\nline4\n"
    assert cli("logs", "--tail", "0", only_out).stdout == ""
    stamped = cli("logs", "-t", name).stdout.splitlines()
    assert len(stamped) == 4 and stamped[0].endswith(" out1") and stamped[0][:4].isdigit() and "T" in stamped[0]


def test_logs_since_skips_older_entries(cli):
    name = cli.name()
    cli("run", "-d", "--name", name, "busybox", "sh", "-c", "echo early; sleep 2; echo late; sleep 30")
    deadline = time.monotonic() + 20
    while "late" not in cli("logs", name).stdout and time.monotonic() < deadline:
        time.sleep(0.3)
    stamps = cli("logs", "-t", name).stdout.splitlines()
    late_stamp = stamps[1].split()[0]
    import calendar

    whole = late_stamp.split(".")[0].rstrip("Z")
    cutoff = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) - 1
    assert cli("logs", "--since", str(cutoff), name).stdout == "late\n"


def test_logs_follow_streams_new_output_and_ends_with_the_container(cli):
    name = cli.name()
    cli("run", "-d", "--name", name, "busybox", "sh", "-c",
        "echo first; sleep 2; echo second; sleep 1; echo third")
    follower = cli.popen("logs", "-f", name)
    first = follower.stdout.readline()
    assert first == b"first\n"
    second = follower.stdout.readline()
    # it arrived while following: the container (one more second to run) and the stream go on
    assert second == b"second\n" and follower.poll() is None
    out, _ = follower.communicate(timeout=30)
    assert out == b"third\n" and follower.returncode == 0


def test_logs_of_a_tty_container_are_raw(cli):
    name = cli.name()
    cli("run", "-t", "--name", name, "busybox", "echo", "tty-out")
    assert cli("logs", name).stdout.replace("\r", "") == "tty-out\n"
