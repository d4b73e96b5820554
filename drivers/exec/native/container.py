"""The container's first process, from clone to exec: what it is given, for ``_nsinit.spawn``.

The monitor (``monitor``) calls ``spawn``. The child is cloned in new pid, mount, uts and ipc
namespaces (and net, unless the host's network is used) and runs C code only (``_nsinit.c``),
never the interpreter. In order, it:

1. takes a session of its own with the stdio fds (the pty as its controlling terminal with a
   tty) and puts every signal back to its default action;
2. joins its cgroups by writing ``0`` to their ``tasks`` files (see ``cgroups.Cgroups.tasks_files``);
3. brings ``lo`` up, sets the hostname and domainname, makes mount propagation private, and
   mounts ``/proc``, ``/sys`` (read-only), ``/dev`` (a tmpfs with null, zero, full, random,
   urandom, tty, a new ``pts`` instance, ``shm``, the ``ptmx``, ``fd``, ``stdin``, ``stdout``,
   ``stderr`` links and the console with a tty) and the bind mounts (container paths are
   resolved as if the rootfs were ``/``, so no symlink leads out of it), then ``pivot_root``s
   into the rootfs;
4. reports ``R`` on ``sync_fd`` and waits for ``G`` on ``go_fd`` (the network driver's turn);
5. joins the memory cgroup (late, so that the pages it touched are not charged to the
   container), makes ``WorkingDir``, drops ``drop_caps`` from the bounding set (Docker's list
   unless privileged, chosen by the driver), sets groups, gid and uid, marks every fd above 2
   close-on-exec and executes the command, looked up in the ``PATH`` of its environment.

A failure before exec is reported as ``E<message>`` on ``sync_fd`` (exit 1). The exec closes
``sync_fd`` (close-on-exec), which tells the monitor the command runs; a command that cannot be
executed exits 127 (126 if it is not executable) after saying why on stderr, as Docker did.
"""

from __future__ import annotations

import os
from typing import Any

from moorage.drivers.exec.common import linux

from . import _nsinit  # type: ignore[attr-defined]  # built from _nsinit.c at install


def spawn(cfg: dict[str, Any], stdio: tuple[int, int, int], tty: bool, console: str | None, sync_fd: int,
          go_fd: int, cgroup_files: list[str]) -> int:
    """Clone the container's first process; returns its pid (see the module for its steps)."""
    flags = linux.CLONE_NEWPID | linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
    if cfg["isolate_network"]:
        flags |= linux.CLONE_NEWNET
    late = [path for path in cgroup_files if "/memory/" in path]
    return _nsinit.spawn(
        flags=flags, stdio=stdio, tty=tty, console=console, sync_fd=sync_fd, go_fd=go_fd,
        cgroups=[path for path in cgroup_files if path not in late], late_cgroups=late,
        rootfs=os.path.realpath(cfg["rootfs"]), hostname=cfg["hostname"], domainname=cfg["domainname"],
        loopback=cfg["isolate_network"],
        # normalised here: the C side resolves symlinks but refuses `..`
        mounts=[(source, os.path.normpath("/" + destination), readonly)
                for source, destination, readonly in cfg["mounts"]],
        workdir=os.path.normpath("/" + (cfg["working_dir"] or "/")),
        uid=cfg["uid"], gid=cfg["gid"], groups=cfg["groups"],
        drop_caps=cfg["drop_caps"],
        args=cfg["args"], env=cfg["env"])


def console_path(slave_fd: int) -> str:
    return os.ttyname(slave_fd)
