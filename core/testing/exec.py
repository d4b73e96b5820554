"""The exec driver contract suite: the behaviour every exec driver must show.

Run it against an installed driver by name (``pytest --pyargs moorage.core.testing
--moorage-driver exec=NAME``), or from a driver package's own tests by subclassing
``ExecDriverContract`` and overriding ``moorage_driver`` (see ``moorage.core.testing.plugin``);
``ExecFixtures`` gives a driver's own extra tests the same fixtures.

The tests build specs with the ``make_spec`` fixture (a fresh copy of the session's busybox
rootfs per spec, from ``busybox_rootfs`` of ``moorage.core.testing.plugin``) and start
containers through ``runner``, whose finalizer kills, waits for and releases every container the
test started, even when the test fails, and then checks that nothing is left behind: no process,
no cgroup named after the container, no mount below its rootfs. ``runner.restart_daemon()``
shuts the driver down and builds a new one on the same root, as a restarted daemon does.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.core.sdk.errors import InvalidParameter, NotFound, StateError
from moorage.core.sdk.hookspecs.exec import ExecDriver, Mount, ProcessSpec, Resources, Stream
from moorage.core.sdk.logs import read_log
from moorage.core.sdk.mounts import CGROUP_ROOT, mounts_below, unified
from moorage.core.testing.driver import DriverFactory

ENV = ["HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=lxc",
       "HOSTNAME=contract"]
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
CAP_SYS_ADMIN = 21
CAP_MKNOD = 27
CAP_CHOWN = 0
CAP_NET_BIND_SERVICE = 10


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """The content of file ``name`` of the ``controller`` cgroup process ``pid`` is in."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return (CGROUP_ROOT / controller / path.lstrip("/") / name).read_text().strip()
    raise AssertionError(f"process {pid} is in no {controller} cgroup")


def cgroups_named(container_id: str) -> list[Path]:
    """cgroup directories (three levels deep in each v1 hierarchy) whose name holds the id."""
    found = []
    for top in CGROUP_ROOT.iterdir():
        for dirpath, dirnames, _ in os.walk(top):
            depth = len(Path(dirpath).relative_to(top).parts)
            if container_id in Path(dirpath).name:
                found.append(Path(dirpath))
            if depth >= 3:
                dirnames.clear()
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def log_text(spec: ProcessSpec, stream: str = "stdout") -> str:
    return "".join(e.log for e in read_log(spec.log_path, (stream,)))


def read_all(attachment) -> list[tuple[Stream, bytes]]:
    chunks = []
    while (chunk := attachment.read()) is not None:
        chunks.append(chunk)
    return chunks


def joined(chunks: list[tuple[Stream, bytes]], stream: Stream | None = None) -> bytes:
    return b"".join(data for s, data in chunks if stream is None or s == stream)


def cap_bits(text: str, field: str) -> int:
    match = re.search(rf"^{field}:\s*([0-9a-f]+)$", text, re.M)
    assert match, f"no {field} in {text!r}"
    return int(match.group(1), 16)


class Runner:
    """Starts containers for one test and guarantees they are gone afterwards."""

    def __init__(self, factory: DriverFactory) -> None:
        self.factory = factory
        self.driver: ExecDriver = factory()
        self.home = self.driver.home
        self.specs: list[ProcessSpec] = []
        self.pids: list[int] = []

    def start(self, spec: ProcessSpec, on_namespace: Callable[[int], None] | None = None) -> int:
        self.specs.append(spec)
        pid = self.driver.start(spec, on_namespace)
        self.pids.append(pid)
        return pid

    def restart_daemon(self) -> ExecDriver:
        """Drop the driver object (as a killed daemon would) and make a new one on the same home."""
        self.factory.shutdown(self.driver)
        self.driver = self.factory()
        return self.driver

    def finish(self) -> list[str]:
        problems = []
        for spec in self.specs:
            cid = spec.container_id
            try:
                self.driver.signal(cid, signal.SIGKILL)
                self.driver.wait(cid, timeout=10)
            except NotFound:
                try:
                    self.driver.restore(spec)
                    self.driver.signal(cid, signal.SIGKILL)
                    self.driver.wait(cid, timeout=10)
                except NotFound:
                    pass
            self.driver.release(cid)
        self.factory.shutdown(self.driver)
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                problems.append(f"process {pid} survived release")
        for spec in self.specs:
            for path in cgroups_named(spec.container_id):
                problems.append(f"cgroup {path} left behind")
            for point in mounts_below(spec.rootfs):
                problems.append(f"mount {point} left behind")
                os.system(f"umount -l '{point}'")
        return problems


class ExecFixtures:
    """The fixtures of the suite, for a driver's own extra tests, against ``moorage_driver``."""

    family = "exec"

    @pytest.fixture
    def runner(self, driver_factory) -> Iterator[Runner]:
        runner = Runner(driver_factory)
        yield runner
        problems = runner.finish()
        assert not problems, problems

    @pytest.fixture
    def driver(self, runner) -> ExecDriver:
        return runner.driver

    @pytest.fixture
    def make_spec(self, busybox_rootfs, tmp_path) -> Callable[..., ProcessSpec]:
        def make(args: list[str], **fields) -> ProcessSpec:
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            state_dir = tmp_path / "containers" / cid
            state_dir.mkdir(parents=True)
            rootfs = tmp_path / f"rootfs-{cid[:12]}"
            shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
            fields.setdefault("env", list(ENV))
            fields.setdefault("hostname", "contract")
            return ProcessSpec(container_id=cid, rootfs=rootfs, args=args, state_dir=state_dir,
                               log_path=state_dir / f"{cid}-json.log", **fields)

        return make

    def run_to_exit(self, runner: Runner, spec: ProcessSpec) -> int:
        runner.start(spec)
        status = runner.driver.wait(spec.container_id, timeout=30)
        assert status is not None, "the process did not exit"
        return status


class ExecDriverContract(ExecFixtures):
    """The exec contract, against ``moorage_driver``."""

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

    # -- isolation -------------------------------------------------------------------------------

    def test_namespaces_and_on_namespace_runs_first(self, runner, make_spec):
        seen = {}

        def on_namespace(pid: int) -> None:
            seen["net"] = os.readlink(f"/proc/{pid}/ns/net")
            (spec.rootfs / "tmp" / "configured").write_text("by the network driver\n")

        spec = make_spec(["sh", "-c", "cat /tmp/configured; cat /sys/class/net/lo/operstate; ls /sys/class/net"])
        runner.start(spec, on_namespace)
        assert runner.driver.wait(spec.container_id, 30) == 0
        assert seen["net"] != os.readlink("/proc/self/ns/net")
        assert log_text(spec) == "by the network driver\nunknown\nlo\n"  # lo is up ("unknown") and alone

    def test_host_network_without_isolation(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "readlink /proc/1/ns/net"], isolate_network=False)
        called = []
        runner.start(spec, called.append)
        assert runner.driver.wait(spec.container_id, 30) == 0
        assert not called
        assert log_text(spec).strip() == os.readlink("/proc/self/ns/net")

    def test_failing_on_namespace_leaves_nothing(self, runner, make_spec):
        spec = make_spec(["sleep", "1000"])
        pids = []

        def broken(pid: int) -> None:
            pids.append(pid)
            raise RuntimeError("the network driver failed")

        with pytest.raises(RuntimeError):
            runner.driver.start(spec, broken)
        wait_for(lambda: not alive(pids[0]), what="the process to be killed")
        assert not cgroups_named(spec.container_id)
        assert not mounts_below(spec.rootfs)

    def test_pid_and_mount_isolation(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'; cat /proc/mounts | wc -l"])
        assert self.run_to_exit(runner, spec) == 0
        lines = log_text(spec).split()
        assert lines[0] == "1"
        assert int(lines[1]) <= 3  # sh, ls/grep: nothing of the host
        assert not mounts_below(spec.rootfs)  # the container's mounts never showed on the host

    def test_bind_mounts_ro_and_rw(self, runner, make_spec, tmp_path):
        rw = tmp_path / "rw"
        ro = tmp_path / "ro"
        rw.mkdir()
        ro.mkdir()
        (ro / "data").write_text("read me\n")
        spec = make_spec(["sh", "-c", "cat /ro/data; echo written > /rw/out; touch /ro/nope 2>/dev/null || echo ro"],
                         mounts=[Mount(rw, "/rw"), Mount(ro, "/ro", readonly=True)])
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "read me\nro\n"
        assert (rw / "out").read_text() == "written\n"
        assert not (ro / "nope").exists()

    def test_readonly_rootfs_keeps_its_mounts_modes(self, runner, make_spec, tmp_path):
        rw = tmp_path / "rw"
        rw.mkdir()
        spec = make_spec(["sh", "-c", "touch /x 2>/dev/null || echo root-ro; touch /tmp/x 2>/dev/null || echo tmp-ro; "
                          "echo written > /new/rw/out && echo x > /dev/null && echo ok"],
                         mounts=[Mount(rw, "/new/rw")], readonly_rootfs=True, working_dir="/not/yet")
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "root-ro\ntmp-ro\nok\n"
        assert (rw / "out").read_text() == "written\n"
        assert not (spec.rootfs / "x").exists()

    def test_bind_destination_through_an_absolute_symlink_stays_in_the_rootfs(self, runner, make_spec, tmp_path):
        source = tmp_path / "shared"
        source.mkdir()
        (source / "f").write_text("here\n")
        marker = f"moorage-contract-{uuid.uuid4().hex[:8]}"
        spec = make_spec(["cat", f"/var/run/{marker}/f"], mounts=[Mount(source, f"/var/run/{marker}")])
        var_run = Path(spec.rootfs) / "var" / "run"
        if var_run.is_dir() and not var_run.is_symlink():
            var_run.rmdir()
        var_run.parent.mkdir(exist_ok=True)
        os.symlink("/run", var_run)  # as in Debian's images: resolved in the rootfs, not on the host
        assert self.run_to_exit(runner, spec) == 0
        assert log_text(spec) == "here\n"
        assert not Path("/run", marker).exists()

    # -- resources ---------------------------------------------------------------------------

    def test_resources_in_cgroups(self, runner, make_spec):
        if unified():
            pytest.skip("cgroup v1 files: exec_cgroups.ExecCgroupsContract checks the v2 ones")
        spec = make_spec(["sh", "-c", "echo ready; exec sleep 1000"],
                         resources=Resources(memory=64 << 20, memory_swap=0, cpu_shares=512, pids=64))
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        assert int(cgroup_file(pid, "memory", "memory.limit_in_bytes")) == 64 << 20
        if runner.driver.memory_limits()[1]:  # what /info reports as SwapLimit
            assert int(cgroup_file(pid, "memory", "memory.memsw.limit_in_bytes")) == 128 << 20
        assert cgroup_file(pid, "cpu", "cpu.shares") == "512"
        assert cgroup_file(pid, "pids", "pids.max") == "64"
        allowed = cgroup_file(pid, "devices", "devices.list")
        assert "a *:* rwm" not in allowed and "c 1:3 rwm" in allowed

    def test_pids_limit_enforced(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 100 & done; echo all"],
                         resources=Resources(pids=4))
        assert self.run_to_exit(runner, spec) != 0  # busybox sh gives up when fork fails
        assert "fork" in log_text(spec, "stderr") and "all" not in log_text(spec)

    def test_memory_limit_enforced(self, runner, make_spec):
        if not runner.driver.memory_limits()[0]:
            pytest.skip(f"{runner.driver.name} reports that it cannot limit memory here")
        spec = make_spec(["sh", "-c", "x=$(head -c 40000000 /dev/zero | tr '\\0' a); echo ${#x}"],
                         resources=Resources(memory=8 << 20))
        assert self.run_to_exit(runner, spec) == 137  # the OOM killer's SIGKILL
        assert log_text(spec) == ""

    def test_memory_below_minimum_is_refused(self, runner, make_spec):
        spec = make_spec(["true"], resources=Resources(memory=4096))
        with pytest.raises(InvalidParameter, match="(?i)memory"):
            runner.driver.start(spec)
        assert not cgroups_named(spec.container_id)

    def test_processes_first_process_first(self, runner, make_spec):
        spec = make_spec(["sh", "-c", "sleep 1000 & sleep 1000 & echo ready; wait"])
        pid = runner.start(spec)
        wait_for(lambda: "ready" in log_text(spec), what="the container")
        wait_for(lambda: len(runner.driver.processes(spec.container_id)) == 3, what="three processes")
        pids = runner.driver.processes(spec.container_id)
        assert pids[0] == pid
        assert all(alive(p) for p in pids)

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
