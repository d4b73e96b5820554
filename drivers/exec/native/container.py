"""The container's first process between fork and exec: isolation, then the user's command.

Runs in a child forked by the monitor after the monitor unshared the pid namespace, so this
process is pid 1 of a new pid namespace. It reports on ``sync_fd``: ``R`` once its namespaces
exist (the monitor then lets the network driver configure them), ``E<message>`` if setting up
isolation failed; exec closes ``sync_fd`` (it is close-on-exec), which tells the monitor the
command runs. A command that cannot be executed exits 127 (126 if not executable), as Docker.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import stat
from typing import Any

from moorage.drivers.exec.common import linux
from moorage.drivers.exec.common.monitor import enter_session
from moorage.drivers.exec.common.policy import DROPPED_CAPS

DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8), "urandom": (1, 9), "tty": (5, 0)}


def inside(rootfs: str, path: str) -> str:
    """The host path of container path ``path``, refusing symlinks that lead out of ``rootfs``."""
    target = os.path.join(rootfs, path.lstrip("/"))
    real = os.path.realpath(target)
    if real != rootfs and not real.startswith(rootfs.rstrip("/") + "/"):
        raise RuntimeError(f"the container path {path} leads outside the container")
    return real


def _mkdir(path: str) -> None:
    os.makedirs(path, mode=0o755, exist_ok=True)


def _setup_dev(rootfs: str, console: str | None) -> None:
    dev = inside(rootfs, "/dev")
    _mkdir(dev)
    linux.mount("tmpfs", dev, "tmpfs", linux.MS_NOSUID, "mode=755,size=65536k")
    for name, (major, minor) in DEVICES.items():
        os.mknod(f"{dev}/{name}", stat.S_IFCHR | 0o666, os.makedev(major, minor))
    for sub in ("pts", "shm"):
        os.mkdir(f"{dev}/{sub}", 0o755)
    linux.mount("devpts", f"{dev}/pts", "devpts", linux.MS_NOSUID | linux.MS_NOEXEC,
                "newinstance,ptmxmode=0666,mode=0620")
    os.symlink("pts/ptmx", f"{dev}/ptmx")
    linux.mount("shm", f"{dev}/shm", "tmpfs", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC,
                "mode=1777,size=65536k")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")
    if console:
        open(f"{dev}/console", "w").close()
        linux.mount(console, f"{dev}/console", None, linux.MS_BIND)


def _bind(rootfs: str, source: str, destination: str, readonly: bool) -> None:
    target = inside(rootfs, destination)
    if not os.path.lexists(target):
        if os.path.isdir(source):
            _mkdir(target)
        else:
            _mkdir(os.path.dirname(target))
            open(target, "a").close()
    linux.mount(source, target, None, linux.MS_BIND | linux.MS_REC)
    if readonly:
        linux.mount(None, target, None, linux.MS_BIND | linux.MS_REMOUNT | linux.MS_RDONLY | linux.MS_REC)


def isolate(cfg: dict[str, Any], console: str | None) -> None:
    """Namespaces, mounts and pivot_root; afterwards ``/`` is the container's rootfs."""
    flags = linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
    if cfg["isolate_network"]:
        flags |= linux.CLONE_NEWNET
    linux.unshare(flags)
    if cfg["isolate_network"]:
        linux.loopback_up()
    linux.sethostname(cfg["hostname"])
    if cfg["domainname"]:
        linux.setdomainname(cfg["domainname"])
    rootfs = os.path.realpath(cfg["rootfs"])
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    linux.mount(rootfs, rootfs, None, linux.MS_BIND | linux.MS_REC)
    old_umask = os.umask(0)
    try:
        proc = inside(rootfs, "/proc")
        _mkdir(proc)
        linux.mount("proc", proc, "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        sys_dir = inside(rootfs, "/sys")
        _mkdir(sys_dir)
        linux.mount("sysfs", sys_dir, "sysfs", linux.MS_RDONLY | linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)
        _setup_dev(rootfs, console)
    finally:
        os.umask(old_umask)
    for source, destination, readonly in cfg["mounts"]:
        _bind(rootfs, source, destination, readonly)
    os.chdir(rootfs)
    linux.pivot_root(".", ".")
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def _exec(cfg: dict[str, Any]) -> None:
    env: dict[str, str] = {}
    for item in cfg["env"]:
        key, _, value = item.partition("=")
        env[key] = value
    args = cfg["args"]
    try:
        os.execvpe(args[0], args, env)
    except OSError as exc:
        code = 126 if exc.errno in (errno.EACCES, errno.ENOEXEC, errno.EISDIR) else 127
        reason = "executable file not found in $PATH" if code == 127 else os.strerror(exc.errno or 0)
        os.write(2, f'exec: "{args[0]}": {reason}\n'.encode())
        os._exit(code)


def run(cfg: dict[str, Any], stdio: tuple[int, int, int], tty: bool, console: str | None, sync_fd: int,
        go_fd: int, cgroup_files: list[str]) -> None:
    """Never returns: becomes the container's command, or exits."""
    gc.disable()  # this interpreter lives for milliseconds: no collections, fewer copied pages
    try:
        enter_session(stdio, tty, (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM))
        # Each cgroup is joined by writing 0 to its ``tasks`` file: this process moving its own
        # (only) thread is cheap, where the monitor moving it waited for an RCU grace period (see
        # cgroups.Cgroups.tasks_files). The memory cgroup is joined just before exec, so that the
        # pages this forked interpreter touches are not charged to the container's limit.
        late: list[int] = []
        for path in cgroup_files:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            if "/memory/" in path:
                late.append(fd)
            else:
                os.write(fd, b"0")
                os.close(fd)
        isolate(cfg, console)
        os.write(sync_fd, b"R")
        if os.read(go_fd, 1) != b"G":
            os._exit(1)
        for fd in late:  # the memory cgroup, as late as possible
            os.write(fd, b"0")
        workdir = cfg["working_dir"] or "/"
        _mkdir(workdir)
        if not cfg["privileged"]:
            linux.drop_bounding_caps(sorted(DROPPED_CAPS.values()))
        os.setgroups(cfg["groups"])
        os.setgid(cfg["gid"])
        os.setuid(cfg["uid"])
        os.chdir(workdir)
        linux.cloexec_from(3)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported to the monitor
        try:
            os.write(sync_fd, b"E" + str(exc).encode(errors="replace"))
        finally:
            os._exit(1)
    _exec(cfg)


def console_path(slave_fd: int) -> str:
    return os.ttyname(slave_fd)
