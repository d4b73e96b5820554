"""The exec contract, part 1: exit statuses and signals, and the process's environment.

``ExecDriverContract`` (``moorage.core.testing.exec``) is all parts together."""

from __future__ import annotations

import signal
import threading

import pytest

from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.sdk.mounts import mounts_below
from moorage.core.testing.exec_fixtures import (
    CAP_CHOWN,
    CAP_MKNOD,
    CAP_NET_BIND_SERVICE,
    CAP_SYS_ADMIN,
    ENV,
    ExecFixtures,
    cap_bits,
    cgroups_named,
    log_text,
    wait_for,
)


class ExecProcessContract(ExecFixtures):
    """The exec contract, part 1: exit statuses and signals, and the process's environment."""

    # -- exit statuses and signals ---------------------------------------------------------------

    @pytest.mark.parametrize(("args", "expected"), [
        (["true"], 0), (["false"], 1), (["sh", "-c", "exit 42"], 42), (["no-such-command"], 127),
        (["/etc/passwd"], 126),
    ])
    def test_exit_status(self, runner, make_spec, args, expected):
        assert self.run_to_exit(runner, make_spec(args)) == expected

    def test_command_not_found_is_logged(self, runner, make_spec):
        spec = make_spec(["no-such-command"])
        assert self.run_to_exit(runner, spec) == 127
        assert "no-such-command" in log_text(spec, "stderr")

    def test_sigkill_gives_137_and_wait_again_answers_at_once(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"])
        runner.start(spec)
        assert runner.driver.wait(spec.container_id, timeout=0.2) is None
        assert runner.driver.wait(spec.container_id, timeout=0) is None
        runner.driver.signal(spec.container_id, signal.SIGKILL)
        assert runner.driver.wait(spec.container_id, timeout=30) == 128 + signal.SIGKILL
        assert runner.driver.wait(spec.container_id) == 137
        assert runner.driver.wait(spec.container_id, timeout=0) == 137
        assert runner.driver.processes(spec.container_id) == []
        runner.driver.signal(spec.container_id, signal.SIGTERM)  # exited: not an error

    def test_many_waiters(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "read x; exit 9"], open_stdin=True)
        runner.start(spec)
        results: list[int | None] = []
        threads = [threading.Thread(target=lambda: results.append(runner.driver.wait(spec.container_id, 30)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        attachment = runner.driver.attach(spec.container_id)
        attachment.write(b"go\n")
        for t in threads:
            t.join(30)
        attachment.close()
        assert results == [9, 9, 9]

    def test_stop_delivers_sigterm_to_a_shell_with_a_trap(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "trap 'echo bye; exit 7' TERM; echo ready; while :; do sleep 0.05; done"])
        runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the trap")
        runner.driver.signal(spec.container_id, signal.SIGTERM)
        assert runner.driver.wait(spec.container_id, timeout=30) == 7
        assert log_text(spec) == "ready\nbye\n"

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
    def test_pid_1_without_handler_dies_of_a_terminating_signal(self, runner, make_spec, signum):
        """As an ordinary process would (the kernel alone would drop it for a namespace's init)."""
        spec = make_spec(["sleep", "1000"])
        runner.start(spec)
        runner.driver.signal(spec.container_id, signum)
        assert runner.driver.wait(spec.container_id, timeout=30) == 128 + signum

    def test_signal_with_harmless_default_is_not_fatal(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"])
        runner.start(spec)
        runner.driver.signal(spec.container_id, signal.SIGWINCH)
        assert runner.driver.wait(spec.container_id, timeout=0.2) is None

    def test_stop_timeout_then_kill(self, runner, make_spec):
        """Stop as core does it: SIGTERM, wait up to the timeout, then SIGKILL."""
        spec = make_spec(["sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.05; done"])
        runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the trap")
        runner.driver.signal(spec.container_id, signal.SIGTERM)
        assert runner.driver.wait(spec.container_id, timeout=0.3) is None
        runner.driver.signal(spec.container_id, signal.SIGKILL)
        assert runner.driver.wait(spec.container_id, timeout=30) == 137

    def test_unknown_container(self, driver):
        with pytest.raises(NotFound):
            driver.wait("0" * 64)
        with pytest.raises(NotFound):
            driver.signal("0" * 64, signal.SIGTERM)
        with pytest.raises(NotFound):
            driver.attach("0" * 64)

    # -- the process's environment -------------------------------------------------------------

    def test_environment_exactly_as_given(self, runner, make_spec):
        env = [*ENV, "A=1", "WITH_SPACE=a b", "EMPTY="]
        spec = make_spec(["sh", "-c", "cat /proc/1/environ | tr '\\0' '\\n'"], env=env)  # pid 1: sh
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec).splitlines() == env

    def test_hostname_domainname(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "hostname; cat /proc/sys/kernel/domainname"], hostname="web1",
                         domainname="example.org")
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "web1\nexample.org\n"

    @pytest.mark.parametrize(("user", "ids"), [
        ("", "0 0"), ("daemon", "1 1"), ("nobody", "65534 65534"), ("1:65534", "1 65534"),
        ("daemon:nogroup", "1 65534"), ("1000", "1000 0"), ("4294967294:4294967294", "4294967294 4294967294"),
    ])
    def test_user(self, runner, make_spec, user, ids):
        spec = make_spec(["sh", "-c", "echo $(id -u) $(id -g)"], user=user)
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == ids + "\n"

    @pytest.mark.parametrize("user", ["nosuchuser", "root:nosuchgroup"])
    def test_unknown_user_is_refused_and_leaves_nothing(self, runner, make_spec, user):
        spec = make_spec(["true"], user=user)
        with pytest.raises(InvalidParameter):
            runner.driver.start(spec)
        assert not cgroups_named(spec.container_id)
        assert not mounts_below(spec.rootfs)

    def test_working_dir_created(self, runner, make_spec):
        spec = make_spec(["pwd"], working_dir="/srv/app/data", user="daemon")
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "/srv/app/data\n"

    def test_minimal_dev_proc_and_readonly_sys(self, runner, make_spec):
        script = ("ls /dev | sort | tr '\\n' ' '; echo; echo x > /dev/null && head -c 4 /dev/zero | wc -c; "
                  "test -d /proc/self && echo proc; touch /sys/x 2>/dev/null || echo sys-ro; "
                  "grep -q '^shm /dev/shm' /proc/mounts && echo shm; cat /proc/1/cmdline | tr '\\0' ' '; echo")
        spec = make_spec(["sh", "-c", script])
        assert self.run_to_exit(runner, spec) == 0
        lines = log_text(spec).splitlines()
        devices = set(lines[0].split())
        assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm"} <= devices
        assert lines[1:5] == ["4", "proc", "sys-ro", "shm"]
        assert lines[5].startswith("sh -c")  # the command is pid 1 of its pid namespace

    def test_no_host_fd_leaks(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "ls /proc/1/fd; true"])  # sh forks ls
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "0\n1\n2\n"

    def test_capabilities_dropped_unless_privileged(self, runner, make_spec):
        spec = make_spec(["cat", "/proc/1/status"])
        assert self.run_to_exit(runner, spec) == 0
        status = log_text(spec)
        for field in ("CapBnd", "CapEff"):
            bits = cap_bits(status, field)
            assert not bits & (1 << CAP_SYS_ADMIN), field  # the whole set: moorage.core.testing.confinement
            assert bits & (1 << CAP_CHOWN) and bits & (1 << CAP_NET_BIND_SERVICE) and bits & (1 << CAP_MKNOD), field
        privileged = make_spec(["cat", "/proc/1/status"], privileged=True)
        assert self.run_to_exit(runner, privileged) == 0
        assert cap_bits(log_text(privileged), "CapEff") & (1 << CAP_SYS_ADMIN)

    def test_device_whitelist(self, runner, make_spec):
        # mknod is not even possible unprivileged; privileged may create and use any device
        spec = make_spec(["sh", "-c", "mknod /tmp/mem c 1 1 2>/dev/null && echo made || echo refused"])
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "refused\n"
        privileged = make_spec(["sh", "-c", "mknod /tmp/kmsg c 1 11 && test -c /tmp/kmsg && echo made"],
                               privileged=True)
        assert self.run_to_exit(runner, privileged) == 0
        assert log_text(privileged) == "made\n"
