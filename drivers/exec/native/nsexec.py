"""``python -m moorage.drivers.exec.native.nsexec CONFIG``: run a process inside a running native
container (``docker exec``). Started by ``NativeDriver.exec`` with the process's stdio.

It enters the container's namespaces (ipc, uts, net, pid, mount) through ``setns``; with a tty
it opens a pty of the container's own devpts (``/dev/pts/ptmx`` below the container's root,
following no symlink, checked to be a devpts ptmx) and hands the master to the daemon on its
stdout, a unix socket (``common.terminal``), so that its own stdio and the command's are the
slave from then on. Then it joins the container's cgroups (by writing its own pid: a
single-threaded process moving itself; the files were opened before ``setns``, the terminal is
handed over first so that a frozen container does not hold the daemon), forks so that the child
is inside the pid namespace, and the child takes the container's root, a session of its own
with the pty as its controlling terminal, applies the container's confinement (``confine``, the
one call that does it) and the user, and runs the command; this helper waits and exits with
the child's status.

CONFIG is JSON: ``pid`` (the container's first process, on the host), ``cgroup_files``,
``args``, ``env``, ``user``, ``working_dir``, ``capabilities`` (the mask), ``seccomp_program``
(base64, or null) and ``tty`` (the initial ``[height, width]`` of the pty, or null for none).
"""

from __future__ import annotations

import base64
import ctypes
import json
import os
import signal
import socket
import sys
from pathlib import Path

from moorage.drivers.exec.common import terminal
from moorage.drivers.exec.common.users import resolve
from moorage.drivers.exec.native import container

NAMESPACES = ("ipc", "uts", "net", "pid", "mnt")  # mnt last: the others are opened through /proc
#: where the terminal is handed over (with a tty): the helper's stdout, a unix socket
CONSOLE_FD = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _fail(code: int, message: str) -> None:
    os.write(2, f"moorage exec: {message}\n".encode())
    os._exit(code)


def _take_terminal(root_fd: int, size: list[int]) -> None:
    """Open a pty of the container's devpts, hand its master to the daemon and make the slave
    this helper's stdio (so also the command's, and where a later failure is told)."""
    master, slave = container.open_pty(root_fd, "dev/pts/ptmx")
    terminal.set_size(slave, *size)
    with socket.socket(fileno=os.dup(CONSOLE_FD)) as console:
        terminal.send_master(console, master)
    os.close(master)
    for target in (0, 1, 2):
        os.dup2(slave, target)
    os.close(slave)


def _child(config: dict, root_fd: int) -> None:
    try:
        os.fchdir(root_fd)
        os.chroot(".")
        os.chdir("/")
    except OSError as exc:
        _fail(126, f"cannot enter the container's root: {exc}")
    if config["tty"]:
        try:
            os.setsid()
            terminal.take_as_controlling(0)
        except OSError as exc:
            _fail(126, f"cannot take the terminal: {exc}")
    try:
        identity = resolve(Path("/"), config["user"])
    except Exception as exc:
        _fail(126, f"unable to find user {config['user']}: {exc}")
    if config["tty"]:
        try:  # the user's own terminal, as a login gives it (runc does the same)
            os.fchown(0, identity.uid, identity.gid)
        except OSError as exc:
            _fail(126, f"cannot give the terminal to the user: {exc}")
    try:
        os.chdir(config["working_dir"] or "/")
    except OSError as exc:
        _fail(126, f"cannot enter the working directory {config['working_dir']}: {exc.strerror}")
    try:
        # the one call that holds this process to the container's confinement (capabilities,
        # seccomp) and takes the user: the same function the container's first process uses
        program = config["seccomp_program"]
        container.confine(int(config["capabilities"]), base64.b64decode(program) if program else None,
                          identity.uid, identity.gid, tuple(identity.groups))
    except OSError as exc:
        _fail(126, f"cannot take the container's confinement and user: {exc}")
    env = dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in config["env"])
    args = config["args"]
    try:
        os.execvpe(args[0], args, env)
    except FileNotFoundError:
        _fail(127, f"{args[0]}: executable file not found in $PATH")
    except PermissionError:
        _fail(126, f"{args[0]}: permission denied")
    except OSError as exc:
        _fail(126, f"{args[0]}: {exc.strerror}")


def _no_more_imports() -> None:
    """From ``setns`` on, every path is the container's: a module imported then (a codec, a
    lazily imported helper) would be the container's code running as root with every
    capability. Every module this helper needs is imported above and the codecs it uses are
    warmed up here; then importing is switched off, so a missed import fails closed."""
    b"".decode("utf-8")
    Path("/").joinpath("etc").as_posix().encode(sys.getfilesystemencoding())
    b"x".decode(sys.getdefaultencoding(), "replace")
    import locale

    b"x".decode(locale.getpreferredencoding(False), "replace")
    sys.meta_path.clear()
    sys.path_hooks.clear()
    sys.path_importer_cache.clear()
    sys.path.clear()


def main(argv: list[str]) -> int:
    config = json.loads(argv[1])
    pid = int(config["pid"])
    _no_more_imports()
    tasks_fds = [os.open(tasks, os.O_WRONLY | os.O_CLOEXEC) for tasks in config["cgroup_files"]]
    ns_fds = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC) for ns in NAMESPACES]
    root_fd = os.open(f"/proc/{pid}/root", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    for ns, fd in zip(NAMESPACES, ns_fds, strict=True):
        _check(_libc.setns(fd, 0), f"entering the container's {ns} namespace")
        os.close(fd)
    if config["tty"]:
        _take_terminal(root_fd, config["tty"])
    for fd in tasks_fds:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
    child = os.fork()
    if child == 0:
        try:
            _child(config, root_fd)
        finally:
            os._exit(126)
    os.close(root_fd)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # passed on to the process
        signal.signal(signum, lambda n, _frame: os.kill(child, n))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except OSError as exc:
        os.write(2, f"moorage exec: {exc}\n".encode())
        sys.exit(126)
