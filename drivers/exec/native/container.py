"""The container's first process, from clone to exec: what it is given, for ``_nsinit.spawn``.

The monitor (``monitor``) calls ``spawn``. The child is cloned in new pid, mount, uts and ipc
namespaces (and net, unless the host's network is used) and runs C code only (``_nsinit.c``),
never the interpreter. In order, it:

1. takes a session of its own with the stdio fds and puts every signal back to its default
   action;
2. joins its cgroups by writing ``0`` to their ``tasks`` (v1) or ``cgroup.procs`` (v2) files
   (see ``cgroups.ContainerCgroups.join_files``);
3. brings ``lo`` up, sets the hostname and domainname, makes mount propagation private, and
   mounts ``/proc``, ``/sys`` (read-only), ``/dev`` (a tmpfs with null, zero, full, random,
   urandom, tty, a new ``pts`` instance, ``shm``, the ``ptmx``, ``fd``, ``stdin``, ``stdout``,
   ``stderr`` links and, with a tty, the console) and the bind mounts (container paths are
   resolved as if the rootfs were ``/``, so no symlink leads out of it), then ``pivot_root``s
   into the rootfs;
4. with a tty, takes the slave of a pty of the container's own ``/dev/pts`` (opened in step 3,
   bind-mounted on ``/dev/console``) as its stdio and controlling terminal, owned by the
   container's user, sized ``Launch.tty_size`` if given; reports ``R`` on ``sync_fd`` (a unix
   socket: with a tty the pty's master comes with it, ``SCM_RIGHTS``) and waits for ``G`` on
   ``go_fd`` (the network driver's turn);
5. joins the memory cgroup (late, so that the pages it touched are not charged to the
   container), makes ``WorkingDir``, confines itself (``_nsinit.confine``, the same function
   ``docker exec`` uses: the bounding set cut to the container's capabilities, the ambient set
   cleared, the seccomp filter loaded, groups, gid and uid set, permitted and effective cut to
   the capabilities, inheritable emptied), marks every fd above 2 close-on-exec and executes
   the command, looked up in the ``PATH`` of its environment.

Unless the container is privileged, step 3 also hides ``masked_paths`` (``/dev/null`` over a
file, an empty read-only tmpfs over a directory), makes ``readonly_paths`` read-only (all of
``/proc/sys``, ``/proc/sys/net`` included, as Docker) and mounts ``/sys`` read-only. A read-only
bind is read-only with every mount below it (``mount_setattr(AT_RECURSIVE)``, else each
submount: ``Launch.readonly_fallback`` forces that path, for its test). Privileged, ``/sys`` is
writable, nothing is masked, every capability stays, there is no seccomp filter, and ``/dev``
also gets a node for each of the host's devices (``Confinement.devices``, ``policy.host_devices``).
With ``Launch.readonly_rootfs`` (Docker's ``--read-only``), the last step of 3 before
``pivot_root`` makes ``WorkingDir`` and remounts the root bind read-only, not recursively: the
mounts below it keep their own modes.

A failure before exec is reported as ``E<message>`` on ``sync_fd`` (exit 1). The exec closes
``sync_fd`` (close-on-exec), which tells the monitor the command runs; a command that cannot be
executed exits 127 (126 if it is not executable) after saying why on stderr, as Docker did.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from moorage.core.sdk.security import SeccompFilter
from moorage.drivers.exec.common import linux
from moorage.drivers.exec.native import _nsinit  # type: ignore[attr-defined]  # built from _nsinit.c at install


@dataclass(frozen=True)
class Confinement:
    """What the container's processes are held to, ready for ``_nsinit``: the capability mask,
    the compiled seccomp program (base64; None for none), the masked and read-only paths, and
    for a privileged container the host's devices (``policy.host_devices``)."""

    capabilities: int
    seccomp_program: str | None
    masked_paths: tuple[str, ...]
    readonly_paths: tuple[str, ...]
    devices: tuple[tuple[str, int, int, int, int, int], ...]


@dataclass(frozen=True)
class Launch:
    """The container's first process as the native monitor's ``spawn`` starts it: the
    ``ProcessSpec`` with its user resolved (``uid``, ``gid``, ``groups``), its confinement
    compiled and its cgroups made (``cgroup_files``, see ``cgroups.ContainerCgroups.join_files``)."""

    rootfs: str
    args: tuple[str, ...]
    env: tuple[str, ...]
    hostname: str
    domainname: str
    working_dir: str
    privileged: bool
    isolate_network: bool
    mounts: tuple[tuple[str, str, bool], ...]  # source, destination, read-only
    readonly_rootfs: bool
    tty_size: tuple[int, int] | None
    uid: int
    gid: int
    groups: tuple[int, ...]
    confinement: Confinement
    cgroup_files: tuple[str, ...]
    #: make a read-only bind read-only mount by mount, as on a kernel without ``mount_setattr``
    readonly_fallback: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Launch:
        """From its JSON form (``dataclasses.asdict``)."""
        confinement = data["confinement"]
        return cls(**{**data, "confinement": Confinement(**{
            **confinement, "devices": tuple(tuple(d) for d in confinement["devices"])})})


def spawn(launch: Launch, stdio: tuple[int, int, int], tty: bool, sync_fd: int, go_fd: int) -> int:
    """Clone the container's first process; returns its pid (see the module for its steps)."""
    flags = linux.CLONE_NEWPID | linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC
    if launch.isolate_network:
        flags |= linux.CLONE_NEWNET
    late = [path for path in launch.cgroup_files if "/memory/" in path]
    held = launch.confinement
    return _nsinit.spawn(
        flags=flags, stdio=stdio, tty=tty, sync_fd=sync_fd, go_fd=go_fd,
        cgroups=[path for path in launch.cgroup_files if path not in late], late_cgroups=late,
        rootfs=os.path.realpath(launch.rootfs), hostname=launch.hostname, domainname=launch.domainname,
        loopback=launch.isolate_network,
        # normalised here: the C side resolves symlinks but refuses `..`
        mounts=[(source, os.path.normpath("/" + destination), readonly)
                for source, destination, readonly in launch.mounts],
        workdir=os.path.normpath("/" + (launch.working_dir or "/")),
        uid=launch.uid, gid=launch.gid, groups=list(launch.groups),
        capabilities=held.capabilities,
        seccomp=base64.b64decode(held.seccomp_program) if held.seccomp_program else None,
        masked_paths=list(held.masked_paths), readonly_paths=list(held.readonly_paths),
        sys_writable=launch.privileged, readonly_fallback=launch.readonly_fallback,
        devices=[tuple(d) for d in held.devices],
        readonly_rootfs=launch.readonly_rootfs,
        tty_size=tuple(launch.tty_size or (0, 0)),
        args=list(launch.args), env=list(launch.env))


def seccomp_argument(data: dict) -> tuple:
    """``SeccompFilter.to_json()``'s form as ``_nsinit.compile_filter`` takes it."""
    f = SeccompFilter.from_json(data)
    return (f.default_action, f.default_errno, f.architectures,
            tuple((r.names, r.action, r.errno, tuple((a.index, a.value, a.op, a.value_two) for a in r.args))
                  for r in f.rules))


def compile_filter(data: dict) -> bytes:
    """The seccomp program libseccomp generates for ``SeccompFilter.to_json()``'s ``data``: what
    ``spawn`` and ``confine`` load (compiling takes milliseconds, loading microseconds)."""
    return _nsinit.compile_filter(seccomp_argument(data))


def confine(capabilities: int, seccomp: bytes | None, uid: int = 0, gid: int = 0, groups: tuple[int, ...] = (),
            no_new_privileges: bool = False) -> None:
    """Hold the calling process to a container's confinement, then take the identity ``uid``,
    ``gid``, ``groups`` (see ``_nsinit.confine``): ``capabilities`` is the bit mask and
    ``seccomp`` the compiled program (``compile_filter``), as ``NativeDriver.confinement`` gives
    them. For a process entering a running container (``docker exec``): call it in a
    single-threaded child that joined the container's namespaces, last before its execve."""
    _nsinit.confine(capabilities=capabilities, seccomp=seccomp, uid=uid, gid=gid, groups=tuple(groups),
                    no_new_privileges=no_new_privileges)


def open_pty(dirfd: int, ptmx: str) -> tuple[int, int]:
    """A new pty pair (master, slave) of the devpts whose ptmx is ``ptmx``, resolved below the
    directory ``dirfd`` as if it were the root, following no symlink, and checked to be a devpts
    ptmx (``_nsinit.open_pty``): a container's own terminal, opened from inside it."""
    return _nsinit.open_pty(dirfd, ptmx)
