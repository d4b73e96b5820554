"""The daemon's side of a process started by ``ExecDriver.exec``: a child of the daemon (a helper
that enters the container, or ``lxc-attach``) whose stdio are pipes, or one pty with a tty: a pty
the child opens inside the container and hands back (``common.terminal``), or one of the
daemon's own. Shared by the exec drivers."""

from __future__ import annotations

import os
import pty
import selectors
import socket
import subprocess
import threading
import weakref

from moorage.core.sdk.errors import DriverError, Impossible, InvalidParameter
from moorage.core.sdk.hookspecs.exec import ExecProcess, Stream
from moorage.drivers.exec.common import terminal

#: How long a child that opens its own pty may take to hand the master over.
PTY_TIMEOUT = 30.0
#: What such a child may say (its error) before it hands the master over, at most.
PTY_EARLY_OUTPUT = 16 << 10


class ChildProcess(ExecProcess):
    """``argv`` run as a child of the daemon, in its own session; with ``tty`` its stdio are the
    slave of a new pty (which becomes its controlling terminal)."""

    def __init__(self, argv: list[str], tty: bool, open_stdin: bool, env: dict[str, str] | None = None,
                 pass_fds: tuple[int, ...] = (), raw: bool = False, pty_from_child: bool = False) -> None:
        """``raw``: the pty passes bytes unchanged (for a child that proxies a pty of its own
        inside the container, as lxc-attach does, which translates them already).

        ``pty_from_child`` (with ``tty``): the child opens the pty itself, inside the container,
        and hands the master back (``terminal.send_master``) on its stdout, a unix socket, on
        which it writes why if it cannot (its stdin is /dev/null until then). Waits for that
        (``PTY_TIMEOUT`` at most: then the child is killed and ``DriverError`` raised); a child
        that fails before is a process whose output is what it said."""
        self.tty, self.open_stdin = tty, open_stdin
        self._closed = threading.Event()
        self._write_lock = threading.Lock()
        self._early = b""
        if tty and pty_from_child:
            self._proc, master, self._early = _spawn_with_child_pty(argv, env, pass_fds)
            self._master = master
            self._outputs = {master: Stream.STDOUT} if master >= 0 else {}
            self._stdin_fd = master if open_stdin else -1
        elif tty:
            master, slave = pty.openpty()
            terminal.set_size(slave, *terminal.INITIAL_SIZE)
            if raw:
                import tty as ttys

                ttys.setraw(slave)
            try:
                self._proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                              env=env, pass_fds=pass_fds,
                                              preexec_fn=lambda: terminal.take_as_controlling(0))
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self._master = master
            self._outputs = {master: Stream.STDOUT}
            self._stdin_fd = master if open_stdin else -1
        else:
            self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE if open_stdin else subprocess.DEVNULL,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                          env=env, pass_fds=pass_fds)
            self._master = -1
            self._outputs = {self._proc.stdout.fileno(): Stream.STDOUT, self._proc.stderr.fileno(): Stream.STDERR}
            self._stdin_fd = self._proc.stdin.fileno() if open_stdin else -1
        self.pid = self._proc.pid
        self._raw = raw and tty
        self._held_cr = b""
        # a self-pipe: ``close`` wakes a ``read`` blocked in select
        self._wake_r, self._wake_w = os.pipe()
        self._finalizer = weakref.finalize(self, _close_fds, [self._master, self._wake_r, self._wake_w])

    def read(self) -> tuple[Stream, bytes] | None:
        if self._early and not self._closed.is_set():  # a child's failure before its pty existed
            early, self._early = self._early, b""
            return Stream.STDOUT, early
        while self._outputs and not self._closed.is_set():
            with selectors.DefaultSelector() as sel:
                for fd in self._outputs:
                    sel.register(fd, selectors.EVENT_READ)
                sel.register(self._wake_r, selectors.EVENT_READ)
                ready = sel.select()
            for key, _ in ready:
                if key.fd == self._wake_r:
                    return None
                try:
                    data = os.read(key.fd, 65536)
                except OSError:  # EIO: the pty's last slave is closed
                    data = b""
                if data:
                    data = self._one_cr(data) if self._raw else data
                    if data:
                        return self._outputs[key.fd], data
                    continue  # all held back until the next read
                stream = self._outputs.pop(key.fd, None)
                if self._held_cr and stream is not None:  # the end: what was held back goes out
                    held, self._held_cr = self._held_cr, b""
                    return stream, held
        return None

    def _one_cr(self, data: bytes) -> bytes:
        """A proxied pty's output passes a second ONLCR (lxc-attach turns output processing
        back on for its own terminal): ``\r\r\n`` becomes ``\r\n`` again, also across reads."""
        data = self._held_cr + data
        self._held_cr = b""
        for tail in (b"\r\r", b"\r"):
            if data.endswith(tail):
                data, self._held_cr = data[:-len(tail)], tail
                break
        return data.replace(b"\r\r\n", b"\r\n")

    def write(self, data: bytes) -> None:
        if self._stdin_fd < 0:
            raise Impossible("the process's stdin is not open")
        with self._write_lock:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._stdin_fd, view):]
            except OSError as exc:
                raise Impossible(f"the process's stdin is closed: {exc}") from None

    def close_stdin(self) -> None:
        with self._write_lock:
            if self._stdin_fd < 0:
                return
            if self.tty:
                try:
                    os.write(self._master, b"\x04")
                except OSError:
                    pass
            else:
                self._proc.stdin.close()
            self._stdin_fd = -1

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            os.write(self._wake_w, b"x")

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            code = self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return 128 - code if code < 0 else code

    def resize(self, height: int, width: int) -> None:
        if not (1 <= height <= 65535 and 1 <= width <= 65535):
            raise InvalidParameter(f"Bad parameter: invalid size {height}x{width}")
        if not self.tty:
            raise Impossible("the process has no tty")
        if self._proc.poll() is not None or self._master < 0:
            raise Impossible("the process has exited")
        terminal.set_size(self._master, height, width)



def _close_fds(fds: list[int]) -> None:
    """The daemon's ends, once the object is gone (the pipes of ``Popen`` close themselves)."""
    for fd in fds:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass


def _spawn_with_child_pty(argv: list[str], env: dict[str, str] | None,
                          pass_fds: tuple[int, ...]) -> tuple[subprocess.Popen, int, bytes]:
    """Start ``argv`` with its stdout and stderr on a unix socket and wait until it hands over
    its pty's master: (the process, the master or -1, what it wrote before)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=theirs.fileno(), stderr=theirs.fileno(),
                                    start_new_session=True, env=env, pass_fds=pass_fds)
        finally:
            theirs.close()
        try:
            master, said = terminal.receive_master(ours, PTY_TIMEOUT, PTY_EARLY_OUTPUT)
        except OSError as exc:  # TimeoutError too: the child is stuck or sent something else
            proc.kill()
            proc.wait()
            raise DriverError(f"cannot set up the process's terminal: {exc}") from None
    if master < 0:  # it closed its end: it is exiting
        try:
            proc.wait(PTY_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc, master, said


def failed_process(message: str, code: int, tty: bool, open_stdin: bool) -> ChildProcess:
    """A process that only reports ``message`` on its stderr and exits ``code``: what cannot
    be resolved inside the container (a user) fails as the process, as the contract says."""
    import sys

    return ChildProcess([sys.executable, "-c", "import sys; sys.stderr.write(sys.argv[1] + '\\n'); "
                         "sys.exit(int(sys.argv[2]))", f"moorage exec: {message}", str(code)], tty, open_stdin)
