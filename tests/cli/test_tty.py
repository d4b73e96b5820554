"""`docker run -t` and `docker exec -t` from a real terminal: the container's tty is a pty of its
own devpts (``tty`` names a /dev/pts/N that exists inside, /dev/tty is its controlling
terminal), sized from the client's terminal and resized with it, and attach, detach and logs go
through it.

The CLI runs in a pty of the test's (``Terminal``), as from a user's terminal: it then sends
``ConsoleSize`` and resizes when the terminal's size changes (SIGWINCH)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time

import pytest
from conftest import eventually

from moorage.drivers.exec.common import terminal

from .conftest import DOCKER

#: Run inside the container: one line per fact, each asserted by ``check_own_tty``.
PROBE = (
    't=$(tty); echo "tty=$t"; test -c "$t" && echo node-exists; '
    "test -t 0 && test -t 1 && echo stdio-tty; "
    # the tty is a node of the container's devpts: the same filesystem as its /dev/pts/ptmx
    '[ "$(stat -L -c %d /proc/self/fd/0)" = "$(stat -c %d /dev/pts/ptmx)" ] && echo own-devpts; '
    'echo "size=$(stty size)"; '
    "echo via-dev-tty > /dev/tty && echo controlling-tty")

PROMPT = r"/ # "
LXC_RUN_T = ("lxc driver (owned by vm): the container's first process gets a pty of the host's devpts "
             "(tty: 'not a tty') and no controlling terminal (/dev/tty: ENXIO, ^C sends no SIGINT)")


class Terminal:
    """The docker CLI on the slave of a pty of ``rows`` x ``cols``, as from a user's terminal."""

    def __init__(self, cli, *args: str, rows: int = 33, cols: int = 101) -> None:
        self.master, slave = pty.openpty()
        terminal.set_size(slave, rows, cols)
        self.proc = subprocess.Popen([DOCKER, "-H", f"unix://{cli.daemon.sock}", *args], env=cli.env, stdin=slave,
                                     stdout=slave, stderr=slave, start_new_session=True,
                                     preexec_fn=lambda: terminal.take_as_controlling(0))
        os.close(slave)
        self.seen = b""  # since the last match
        self.transcript = bytearray()  # everything

    def _read(self) -> bytes:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the CLI is gone
            data = b""
        self.seen += data
        self.transcript += data
        return data

    def text(self) -> str:
        return self.transcript.decode(errors="replace")

    def expect(self, pattern: str, timeout: float = 30) -> re.Match:
        """Read until ``pattern`` matches what was seen since the last match; that match."""
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(pattern.encode(), self.seen)
            if found:
                self.seen = self.seen[found.end():]
                return found
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.master], [], [], left)[0]:
                raise AssertionError(f"{pattern!r} not seen in {self.seen!r}")
            if not self._read():
                raise AssertionError(f"{pattern!r} not seen before the end: {self.seen!r}")

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def resize(self, rows: int, cols: int) -> None:
        """The user resizes the window: the CLI gets SIGWINCH and resizes the container's tty."""
        terminal.set_size(self.master, rows, cols)

    def wait(self, timeout: float = 30) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.1)[0] and not self._read():
                break
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def term(cli):
    opened: list[Terminal] = []

    def open_terminal(*args: str, rows: int = 33, cols: int = 101) -> Terminal:
        t = Terminal(cli, *args, rows=rows, cols=cols)
        opened.append(t)
        return t

    yield open_terminal
    for t in opened:
        t.close()


def check_own_tty(output: str, size: str) -> None:
    lines = output.replace("\r", "").splitlines()
    tty = next((line for line in lines if line.startswith("tty=")), "tty=?")
    assert re.fullmatch(r"tty=/dev/pts/\d+", tty), output
    for fact in ("node-exists", "stdio-tty", "own-devpts", f"size={size}", "via-dev-tty", "controlling-tty"):
        assert fact in lines, (fact, output)


def test_run_t_gets_a_tty_of_the_containers_devpts(cli, term, exec_driver, request):
    if exec_driver == "lxc":
        request.applymarker(pytest.mark.xfail(strict=True, reason=LXC_RUN_T))
    t = term("run", "--rm", "-it", "busybox", "sh", "-c", PROBE + "; echo probe-done")
    t.expect("probe-done")
    assert t.wait() == 0
    check_own_tty(t.text(), "33 101")
    # the container's user owns its terminal, as a login gives it: it may reopen it by name
    done = cli("run", "--rm", "-t", "-u", "nobody", "busybox", "sh", "-c",
               'echo by-name > "$(tty)" && echo reopened')
    assert "reopened" in done.stdout and "by-name" in done.stdout, done


def test_exec_t_gets_a_tty_of_the_containers_devpts(cli, term):
    name = cli.name()
    cli("run", "-d", "--name", name, "busybox", "sleep", "120")
    # the CLI sets the size after the start (at API 1.6 its exec start carries no ConsoleSize, as
    # Docker's does neither before 1.42): the probe waits, at most 10 s, for that resize
    resized = 'i=0; while [ "$(stty size)" = "24 80" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done; '
    t = term("exec", "-it", name, "sh", "-c", resized + PROBE + "; echo probe-done")
    t.expect("probe-done")
    assert t.wait() == 0
    check_own_tty(t.text(), "33 101")
    # without a terminal on the client's side (-t alone): the same tty inside
    done = cli("exec", "-t", name, "sh", "-c", PROBE)
    check_own_tty(done.stdout, "24 80")
    # a user's own terminal, as a login gives it: it may reopen it by name
    done = cli("exec", "-t", "-u", "nobody", name, "sh", "-c", 'echo by-name > "$(tty)" && echo reopened')
    assert "reopened" in done.stdout and "by-name" in done.stdout, done


def size_seen(t: Terminal, size: str, timeout: float = 20) -> None:
    """Ask the shell on ``t`` for its tty's size until it is ``size`` (the CLI resizes
    asynchronously after SIGWINCH)."""
    def current() -> bool:
        t.send(b"echo size=$(stty size)=\n")
        return t.expect(r"size=(\d+ \d+)=").group(1).decode() == size

    eventually(current, f"the tty to be {size}", timeout)


def test_exec_it_interactive_resize_and_exit_code(cli, term):
    name = cli.name()
    cli("run", "-d", "--name", name, "busybox", "sleep", "120")
    t = term("exec", "-it", name, "sh", rows=33, cols=101)
    t.expect(PROMPT)  # typed before, it could be flushed as the shell sets its terminal up
    size_seen(t, "33 101")
    t.resize(40, 132)
    size_seen(t, "40 132")
    t.send(b"echo out-$((6 * 7))\n")
    t.expect("out-42")
    t.send(b"exit 3\n")
    assert t.wait() == 3


def test_run_it_resize_detach_logs_and_attach(cli, term, exec_driver):
    name = cli.name()
    t = term("run", "-it", "--name", name, "busybox", "sh", rows=33, cols=101)
    t.expect(PROMPT)
    size_seen(t, "33 101")  # ConsoleSize, and the CLI's resize after the start
    t.resize(40, 132)
    size_seen(t, "40 132")
    t.send(b"echo marker-$((6 * 7))\n")
    t.expect("marker-42")
    # detach (Ctrl-P Ctrl-Q): the CLI ends, the container runs on
    t.send(b"\x10")
    time.sleep(0.3)
    t.send(b"\x11")
    assert t.wait() == 0
    assert cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "true"
    assert "marker-42" in cli("logs", name).stdout
    # attach again from another terminal: resize and input go to the same tty
    again = term("attach", name, rows=50, cols=150)
    size_seen(again, "50 150")
    again.send(b"exit 4\n")
    assert again.wait() == 4
    assert cli("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip() == "4"


def test_console_size_is_the_first_size(cli, busybox_daemon):
    """Through the API, with no resize at all: ConsoleSize alone sizes the tty."""
    with busybox_daemon.client() as api:
        created = api.post("/containers/create", json={
            "Image": "busybox", "Tty": True, "Cmd": ["sh", "-c", "sleep 1; stty size"],
            "HostConfig": {"ConsoleSize": [45, 123]}})
        assert created.status_code == 201, created.text
        cid = created.json()["Id"]
        try:
            assert api.post(f"/containers/{cid}/start").status_code == 204
            assert api.post(f"/containers/{cid}/wait", timeout=60).json()["StatusCode"] == 0
            logs = api.get(f"/containers/{cid}/logs", params={"stdout": 1}).content
            assert logs.replace(b"\r", b"") == b"45 123\n"
            bad = api.post("/containers/create", json={"Image": "busybox", "HostConfig": {"ConsoleSize": [1, -1]}})
            assert bad.status_code == 400 and "ConsoleSize" in bad.text
        finally:
            api.delete(f"/containers/{cid}", params={"force": 1})


@pytest.mark.parametrize("swap", [
    "mkfifo /dev/pts/ptmx",  # a FIFO, which a blocking open would wait on forever
    "mkdir /dev/fake && mknod /dev/fake/ptmx c 5 2 && rmdir /dev/pts && ln -s /dev/fake /dev/pts",  # a symlink
    # a ptmx node on a tmpfs, next to a devpts of the container's making: it opens a pty there
    "mkdir /dev/pts/pts && mount -t devpts -o newinstance,ptmxmode=666 x /dev/pts/pts && mknod /dev/pts/ptmx c 5 2",
])
def test_exec_t_refuses_a_ptmx_the_container_replaced(cli, exec_driver, swap):
    """The container's root (privileged here, to unmount its /dev/pts) controls the path the
    exec helper opens: whatever it puts there, exec -t fails at once with a plain error, never
    waits, never follows a link, never uses a pty that is not of the container's devpts."""
    if exec_driver != "native":
        pytest.skip("the lxc driver's exec -t is lxc-attach's own pty")
    name = running_privileged(cli)
    cli("exec", name, "sh", "-c", f"umount /dev/pts && {swap}")
    done = cli("exec", "-t", name, "sh", "-c", "echo ran", check=False, timeout=30)  # never waits
    assert done.returncode == 126 and "ran" not in done.stdout, done
    assert "/dev/pts/ptmx" in done.stdout + done.stderr, done
    # the container itself is unharmed, and exec without a tty still works
    assert cli("exec", name, "echo", "still-here").stdout == "still-here\n"


def running_privileged(cli) -> str:
    name = cli.name()
    cli("run", "-d", "--privileged", "--name", name, "busybox", "sleep", "120")
    return name


@pytest.mark.parametrize("command", ["run", "exec"])
def test_ctrl_c_interrupts_the_foreground_command(cli, term, exec_driver, command, request):
    """^C typed in the client's terminal reaches the command in the foreground of the
    container's tty (its controlling terminal's line discipline sends SIGINT), not the shell."""
    if command == "run" and exec_driver == "lxc":
        request.applymarker(pytest.mark.xfail(strict=True, reason=LXC_RUN_T))
    name = cli.name()
    if command == "run":
        t = term("run", "-it", "--name", name, "busybox", "sh")
    else:
        cli("run", "-d", "--name", name, "busybox", "sleep", "120")
        t = term("exec", "-it", name, "sh")
    t.expect(PROMPT)
    t.send(b"sleep 100\n")
    time.sleep(1)
    t.send(b"\x03")
    t.expect(PROMPT, timeout=15)  # the sleep was interrupted: the shell is back long before 100 s
    t.send(b"echo after-$((1 + 1))\n")
    t.expect("after-2")
    t.send(b"exit 0\n")
    assert t.wait() == 0
