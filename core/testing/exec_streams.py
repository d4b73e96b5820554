"""The exec contract, part 3: stdio, attach and logs; restore after a daemon restart, and release.

``ExecDriverContract`` (``moorage.core.testing.exec``) is all parts together."""

from __future__ import annotations

import signal
import threading
import time

import pytest

from moorage.core.sdk.errors import NotFound, StateError
from moorage.core.sdk.hookspecs.exec import ProcessSpec, Stream
from moorage.core.sdk.logs import read_log
from moorage.core.sdk.mounts import mounts_below
from moorage.core.testing.exec_fixtures import (
    RFC3339NANO,
    ExecFixtures,
    alive,
    cgroups_named,
    joined,
    log_text,
    read_all,
    wait_for,
)


class ExecStreamsContract(ExecFixtures):
    """The exec contract, part 3: stdio, attach and logs; restore after a daemon restart, and release."""

    # -- stdio, attach, logs -------------------------------------------------------------------

    def test_log_lines(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "echo one; echo two >&2; printf 'three\\nunterminated'"])
        assert self.run_to_exit(runner, spec) == 0
        entries = list(read_log(spec.log_path))
        assert [(e.stream, e.log) for e in entries if e.stream == "stdout"] == [("stdout", "one\n"),
                                                                               ("stdout", "three\n")]
        assert [e.log for e in entries if e.stream == "stderr"] == ["two\n"]
        assert all(RFC3339NANO.match(e.time) for e in entries)
        assert oct(spec.log_path.stat().st_mode & 0o777) == oct(0o600)
        again = make_spec(["echo", "four"])
        again.log_path = spec.log_path  # a second run appends
        assert self.run_to_exit(runner, again) == 0
        assert log_text(spec) == "one\nthree\nfour\n"

    def test_much_output_is_logged_in_order(self, runner, make_spec):
        spec = make_spec(["seq", "1", "30000"])
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "".join(f"{i}\n" for i in range(1, 30001))

    def test_concurrent_starts(self, runner, make_spec):
        specs = [make_spec(["sh", "-c", f"echo {i}; exit {i}"]) for i in range(6)]
        errors: list[BaseException] = []

        def start(spec: ProcessSpec) -> None:
            try:
                runner.start(spec)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(spec,)) for spec in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert [runner.driver.wait(s.container_id, 30) for s in specs] == list(range(6))
        assert [log_text(s) for s in specs] == [f"{i}\n" for i in range(6)]

    def test_attach_pipes_keep_streams_apart(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "read x; echo out $x; echo err $x >&2"], open_stdin=True)
        runner.start(spec)
        attachment = runner.driver.attach(spec.container_id)
        attachment.write(b"hi\n")
        chunks = read_all(attachment)
        assert joined(chunks, Stream.STDOUT) == b"out hi\n"
        assert joined(chunks, Stream.STDERR) == b"err hi\n"
        assert runner.driver.wait(spec.container_id, 30) == 0

    def test_stdin_round_trip_and_close_stdin(self, runner, make_spec):
        spec = make_spec(["cat"], open_stdin=True, stdin_once=True)
        runner.start(spec)
        attachment = runner.driver.attach(spec.container_id)
        payload = b"".join(b"line %d\n" % i for i in range(2000))
        attachment.write(payload)
        attachment.close_stdin()
        assert joined(read_all(attachment)) == payload
        assert runner.driver.wait(spec.container_id, 30) == 0

    def test_stdin_closed_without_open_stdin(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "cat; echo eof"])
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "eof\n"

    def test_detach_keeps_running_and_second_attach_sees_later_output(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "while read x; do echo got $x; done"], open_stdin=True)
        runner.start(spec)
        first = runner.driver.attach(spec.container_id)
        first.write(b"a\n")
        assert first.read() == (Stream.STDOUT, b"got a\n")
        first.close()
        assert first.read() is None
        assert runner.driver.wait(spec.container_id, timeout=0.1) is None
        second = runner.driver.attach(spec.container_id)
        second.write(b"b\n")
        second.close_stdin()
        assert joined(read_all(second)) == b"got b\n"
        assert runner.driver.wait(spec.container_id, 30) == 0
        assert log_text(spec) == "got a\ngot b\n"

    def test_attach_with_replay_gets_output_written_before_it(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "echo early; echo early-err >&2; read x; echo late $x"], open_stdin=True)
        runner.start(spec)
        deadline = time.monotonic() + 10
        while (log_text(spec), log_text(spec, "stderr")) != ("early\n", "early-err\n") and time.monotonic() < deadline:
            time.sleep(0.01)
        attachment = runner.driver.attach(spec.container_id, replay=True)
        attachment.write(b"x\n")
        chunks = read_all(attachment)
        assert joined(chunks, Stream.STDOUT) == b"early\nlate x\n"
        assert joined(chunks, Stream.STDERR) == b"early-err\n"
        plain = make_spec(["sh", "-c", "echo before; sleep 0.3; echo after"])
        runner.start(plain)
        while "before" not in log_text(plain) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert joined(read_all(runner.driver.attach(plain.container_id))) == b"after\n"

    def test_write_without_open_stdin_is_impossible(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"])
        runner.start(spec)
        attachment = runner.driver.attach(spec.container_id)
        with pytest.raises(StateError):
            attachment.write(b"x")
        attachment.close()

    def test_attach_after_exit_is_impossible(self, runner, make_spec):
        spec = make_spec(["true"])
        assert self.run_to_exit(runner, spec) == 0
        with pytest.raises(StateError):
            runner.driver.attach(spec.container_id)

    def test_tty_and_resize(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "read x; stty size; test -t 1 && echo tty-$x; echo e >&2"],
                         tty=True, open_stdin=True)
        runner.start(spec)
        attachment = runner.driver.attach(spec.container_id)
        runner.driver.resize(spec.container_id, 40, 100)
        attachment.write(b"ok\n")
        chunks = read_all(attachment)
        assert {s for s, _ in chunks} == {Stream.STDOUT}  # one stream with a tty
        out = joined(chunks).replace(b"\r\n", b"\n")
        assert b"40 100\n" in out and b"tty-ok\n" in out and b"e\n" in out
        assert runner.driver.wait(spec.container_id, 30) == 0

    def test_tty_close_stdin_ends_input(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "cat; echo done"], tty=True, open_stdin=True, stdin_once=True)
        runner.start(spec)
        attachment = runner.driver.attach(spec.container_id)
        attachment.write(b"typed\n")
        attachment.close_stdin()
        out = joined(read_all(attachment)).replace(b"\r\n", b"\n")
        assert out.endswith(b"done\n") and b"typed\n" in out
        assert runner.driver.wait(spec.container_id, 30) == 0

    def test_resize_without_tty_is_impossible(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"])
        runner.start(spec)
        with pytest.raises(StateError):
            runner.driver.resize(spec.container_id, 24, 80)

    # -- restore and release -------------------------------------------------------------------

    def test_restore_running_container(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "trap 'echo term; exit 5' TERM; echo ready; "
                                      "while :; do read x && echo got $x; sleep 0.05; done"], open_stdin=True)
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        driver = runner.restart_daemon()
        assert driver.restore(spec) is True
        assert driver.processes(spec.container_id)[0] == pid
        attachment = driver.attach(spec.container_id)
        attachment.write(b"after\n")
        assert attachment.read() == (Stream.STDOUT, b"got after\n")
        driver.signal(spec.container_id, signal.SIGTERM)
        assert driver.wait(spec.container_id, 30) == 5
        assert log_text(spec) == "ready\ngot after\nterm\n"

    def test_exit_while_daemon_down_is_recorded(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "read x; echo late; exit 4"], open_stdin=True)
        pid = runner.start(spec)
        attachment = runner.driver.attach(spec.container_id)
        runner.driver.cleanup()  # the "daemon" is gone; its attachment ends the container's input
        attachment.write(b"go\n")
        attachment.close()
        wait_for(lambda: not alive(pid), what="the container to exit")
        driver = runner.factory(runner.home)
        runner.driver = driver
        wait_for(lambda: driver.restore(spec) is False, what="the monitor to record the exit")
        assert driver.wait(spec.container_id) == 4
        assert log_text(spec) == "late\n"

    def test_a_status_wait_returned_is_found_again_by_restore(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "exit 6"])
        runner.start(spec)
        assert runner.driver.wait(spec.container_id, 30) == 6
        driver = runner.restart_daemon()  # at once: nothing may be left to record
        assert driver.restore(spec) is False
        assert driver.wait(spec.container_id) == 6

    def test_restore_unknown_container(self, driver, make_spec):
        spec = make_spec(["true"])
        assert driver.restore(spec) is False
        assert driver.wait(spec.container_id) is None
        driver.release(spec.container_id)

    def test_release_leaves_nothing_and_forgets(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "sleep 1000 & exec sleep 1000"])
        runner.start(spec)
        wait_for(lambda: len(runner.driver.processes(spec.container_id)) == 2, what="two processes")
        pids = runner.driver.processes(spec.container_id)
        runner.driver.signal(spec.container_id, signal.SIGKILL)
        assert runner.driver.wait(spec.container_id, 30) == 137
        runner.driver.release(spec.container_id)
        runner.driver.release(spec.container_id)  # safe twice
        assert not any(alive(p) for p in pids)
        assert not cgroups_named(spec.container_id)
        assert not mounts_below(spec.rootfs)
        with pytest.raises(NotFound):
            runner.driver.wait(spec.container_id)

    def test_restart_after_exit(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "echo run"])
        assert self.run_to_exit(runner, spec) == 0
        runner.driver.release(spec.container_id)
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "run\nrun\n"
