"""Exec drivers: running a container's process.

Vocabulary. Core prepares everything a container needs (the rootfs from the graph driver, the
mounts, the environment, the resolved command) into a ``ProcessSpec`` and hands it to the exec
driver, which isolates and runs the process (namespaces, cgroups, capabilities), records its
output and exit status, and lets core signal it, list its processes and attach to its stdio.

The driver owns everything below ``spec.state_dir / "exec"`` and its own ``home``. A container
outlives the daemon: when the daemon stops or is killed the process keeps running, its output
keeps being logged and its exit status is still recorded (the driver runs a small monitor, or
leans on a tool's own, e.g. LXC's); a restarted daemon calls ``restore``.

Flow at ``POST /containers/{id}/start``::

    pid = driver.start(spec, on_namespace=network.join)   # network.join(pid) configures eth0
    ... driver.wait(id) -> exit status ...                 # core's monitor thread
    driver.release(id)                                     # after the exit: cgroups, pty, fds

Stop (``POST .../stop?t=``) is core's: ``signal(id, SIGTERM)``, ``wait(id, timeout=t)``, and if
that returned None, ``signal(id, SIGKILL)`` and ``wait(id)``. Kill is ``signal(id, SIGKILL)``.

The network namespace: with ``spec.isolate_network`` the driver makes a new one and calls
``on_namespace(pid)`` before the container's command runs, with a host pid whose
``/proc/<pid>/ns/net`` is that namespace; the container's command starts only after the
callback returns. If the callback raises, the driver kills the process, cleans up and re-raises.
Without it the process shares the host's network namespace (the ``host`` network driver).

Exit statuses: the process's exit code, or ``128 + n`` if it was killed by signal ``n``; a
command that cannot be found exits ``127`` (``126`` if it is not executable), with a message
on its stderr (so in the log).

Output is logged with ``moorage.core.sdk.logs.LogWriter(spec.log_path, spec.log_rotation)``: one
JSON object per line (lines beyond 16 KiB split), appended to ``spec.log_path`` and rotated,
also while the daemon is down.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moorage.core.sdk.driver import Driver
from moorage.core.sdk.errors import NotSupported
from moorage.core.sdk.hookspecs import hookspec
from moorage.core.sdk.logs import LogRotation
from moorage.core.sdk.security import Confinement

#: The smallest memory limit a container may have, in bytes (Docker 0.6's rule); ``start``
#: refuses less with ``InvalidParameter``.
MIN_MEMORY = 524288


@dataclass(frozen=True)
class Mount:
    """A bind mount of a host path (a volume, a bind, /etc/hosts...) into the container."""

    source: Path
    destination: str  # absolute, inside the container
    readonly: bool = False


@dataclass(frozen=True)
class Resources:
    """Limits, enforced through cgroups."""

    memory: int = 0  # bytes; 0: no limit; else at least MIN_MEMORY
    memory_swap: int = 0  # memory+swap bytes; 0: twice memory; -1: unlimited swap
    cpu_shares: int = 0  # relative weight; 0: the default
    pids: int = 0  # max processes; 0: no limit


@dataclass
class ProcessSpec:
    """Everything an exec driver needs to run one container's process."""

    container_id: str
    rootfs: Path  # the graph driver's mount of the container layer
    args: list[str]  # the command: args[0] is looked up in the container's PATH
    env: list[str]  # "KEY=value", complete (core adds HOME, PATH, HOSTNAME...)
    hostname: str
    state_dir: Path  # <root>/containers/<id>; the driver's files go in state_dir/"exec"
    log_path: Path  # the JSON-lines log the driver appends output to (see ``write_log_line``)
    domainname: str = ""
    #: "", name, uid, name:group or uid:gid, resolved in rootfs/etc/passwd and /etc/group: a name
    #: must exist there, a number is used as given (its passwd entry's group, else gid 0);
    #: supplementary groups are the /etc/group entries listing the user's name.
    user: str = ""
    working_dir: str = ""  # created if missing; "" means /
    #: stdin, stdout and stderr are the slave of a pty, the process's controlling terminal; the
    #: driver's side holds the master. The pty should be one of the container's own devpts (its
    #: /dev/pts), as in Docker, so that ``tty`` names it inside.
    tty: bool = False
    #: With ``tty``: the pty's first size (height, width), from ``HostConfig.ConsoleSize``. A
    #: driver that can sets it before the command runs; core sizes the tty again once ``start``
    #: returns, for the drivers that cannot. None: the driver's default.
    tty_size: tuple[int, int] | None = None
    open_stdin: bool = False
    stdin_once: bool = False
    privileged: bool = False
    isolate_network: bool = True  # a new network namespace (with ``lo`` up), see on_namespace
    resources: Resources = field(default_factory=Resources)
    mounts: list[Mount] = field(default_factory=list)  # in order; destinations created if missing
    #: The container's root filesystem is mounted read-only (Docker's ``--read-only``): its
    #: binds and volumes (``mounts``), /etc/hosts, /etc/hostname, /etc/resolv.conf and /dev,
    #: /proc, /sys keep their own modes. /tmp is read-only too unless a mount covers it.
    readonly_rootfs: bool = False
    #: Driver-specific settings from start's ``LxcConf`` ([key, value] pairs), in order.
    driver_options: list[tuple[str, str]] = field(default_factory=list)
    #: What a non-privileged container is held to: exactly these capabilities in its bounding,
    #: permitted and effective sets (inheritable and ambient empty), ``masked_paths`` hidden,
    #: ``readonly_paths`` and /sys read-only, and the seccomp filter of
    #: ``confinement.seccomp_filter()``. Ignored with ``privileged`` (every capability, no
    #: filter, /proc and /sys writable, every device). See ``moorage.core.sdk.security``.
    confinement: Confinement = field(default_factory=Confinement)
    #: How big ``log_path`` may grow before it is rotated, and how many files are kept.
    log_rotation: LogRotation = field(default_factory=LogRotation)


@dataclass(frozen=True)
class ResourceUsage:
    """A running container's use of its cgroups, for ``GET /containers/{id}/stats``.

    A figure the driver cannot read on this host is 0."""

    memory_usage: int = 0  # bytes charged to the container now (cache excluded where known)
    memory_limit: int = 0  # bytes; 0: no limit
    cpu_total_ns: int = 0  # CPU time used by all of its processes, user + system, nanoseconds
    cpu_user_ns: int = 0
    cpu_system_ns: int = 0
    pids: int = 0  # processes (tasks) in the container now
    pids_limit: int = 0  # 0: no limit


class Stream(enum.IntEnum):
    """Stream numbers as in the attach multiplexing header."""

    STDIN = 0
    STDOUT = 1
    STDERR = 2


class Attachment(abc.ABC):
    """A live connection to a running container's stdio, from ``ExecDriver.attach``.

    Output written by the container after ``attach`` returned is delivered, in order, to every
    attachment; with a tty everything arrives as STDOUT. Methods block; core calls them from
    worker threads (``read`` in one thread while another writes is fine). Closing an
    attachment, or dropping it, never stops the container.
    """

    @abc.abstractmethod
    def read(self) -> tuple[Stream, bytes] | None:
        """The next chunk of output, or None once the process has exited and all output is read
        (or ``close`` was called)."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the container's stdin. Raises ``StateError`` if stdin is not open
        (``open_stdin`` was false) or the container no longer reads it."""

    @abc.abstractmethod
    def close_stdin(self) -> None:
        """Close the container's stdin so the process reads EOF (the StdinOnce rule).

        With a tty, stdin and output share the pty: the driver sends the end-of-file character
        (^D), which a reader in canonical mode sees as EOF; output keeps flowing.
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Detach; the process keeps running. Unblocks a pending ``read``."""


@dataclass
class ExecSpec:
    """A further process to run inside a running container (``docker exec``)."""

    args: list[str]  # the command: args[0] is looked up in the container's PATH
    env: list[str]  # "KEY=value", complete (core starts from the container's environment)
    #: as ``ProcessSpec.user``, resolved in the container's own /etc/passwd and /etc/group
    user: str = ""
    working_dir: str = ""  # "" means /; must exist
    #: a new pty (like ``ProcessSpec.tty``, of the container's own devpts): stdout and stderr
    #: arrive as STDOUT, ``resize`` works
    tty: bool = False
    open_stdin: bool = False
    privileged: bool = False  # every capability, as a privileged container's


class ExecProcess(Attachment):
    """A process started by ``ExecDriver.exec``: its stdio (the ``Attachment`` methods; there is
    no replay, nothing is logged), its exit status and its pty size. Dropping it does not stop
    the process; ``close`` detaches from its stdio."""

    #: the host pid of the process (or of the driver's helper that waits on it)
    pid: int = 0

    @abc.abstractmethod
    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the process exits; its exit status (``128 + n`` if killed by signal
        ``n``, 126/127 if the command cannot be run), or None on timeout."""

    @abc.abstractmethod
    def resize(self, height: int, width: int) -> None:
        """Set the pty window size. Raises ``Impossible`` without a tty or once the process has
        exited, ``InvalidParameter`` for a size outside 1..65535."""


class ExecDriver(Driver, abc.ABC):
    """Runs container processes. All methods block and are called from core's worker threads.
    Core serialises calls per container; calls for different containers run concurrently.
    Every method taking a ``container_id`` raises ``NotFound`` for a container this driver
    never started (or already released)."""

    @abc.abstractmethod
    def start(self, spec: ProcessSpec, on_namespace: Callable[[int], None] | None = None) -> int:
        """Start the container's process and return its host pid once it runs.

        Raises ``InvalidParameter`` for an empty command, a user or group that does not exist
        in the container, resources out of range (memory below ``MIN_MEMORY``, a memory_swap
        below memory), a mount whose source does not exist or whose destination is not an
        absolute path other than ``/``; ``StateError`` if the container is already running; and
        ``DriverError`` when isolation cannot be set up. On any error nothing is left behind:
        no cgroup, mount or process. A command that is not found is not an error here: the
        process exits 127, as ``wait`` reports.

        ``on_namespace`` is called only with ``spec.isolate_network`` (see the module docstring);
        an exception from it is re-raised after the cleanup. A container may be started again
        after ``release`` with the same spec (restart); its log is appended to.
        """

    @abc.abstractmethod
    def wait(self, container_id: str, timeout: float | None = None) -> int | None:
        """Block until the process exits and return its exit status; None on timeout.

        Returns at once for a process that already exited (also one that exited while the
        daemon was down); returns None at once for a restored container whose exit status was
        never recorded. Any number of threads may wait on one container. The status is
        returned only after all of the process's output is in the log, and after the driver
        recorded it where a later ``restore`` finds it (core answers ``wait`` requests before
        it saves the exit itself).
        """

    @abc.abstractmethod
    def signal(self, container_id: str, signum: int) -> None:
        """Send ``signum`` to the container's first process (pid 1 inside it).

        pid 1 reacts as an ordinary process would: the kernel drops signals a namespace's
        init does not handle, so when the signal's default action is to terminate and pid 1
        neither catches nor ignores it, the driver ends the process itself and ``wait``
        reports ``128 + signum`` (``sleep`` as pid 1 stops on SIGTERM with 143; a shell that
        traps SIGTERM runs its trap; one that ignores it keeps running). SIGKILL always kills.
        When pid 1 exits, every other process of the container is killed. Returns without
        waiting; a process that already exited is not an error.
        """

    @abc.abstractmethod
    def processes(self, container_id: str) -> list[int]:
        """Host pids of every process of the container, its first process first; empty once
        the container has exited."""

    @abc.abstractmethod
    def attach(self, container_id: str, replay: bool = False) -> Attachment:
        """A new ``Attachment`` to the running process's stdio. Raises ``StateError`` if the
        process has exited.

        With ``replay`` the attachment first delivers the output the current run wrote before
        the attach (at least its first 64 KiB; a driver may stop keeping it past a bound of its
        choosing), so a client that asked to attach before the container started misses
        nothing (today's docker CLI attaches before it starts a container)."""

    @abc.abstractmethod
    def resize(self, container_id: str, height: int, width: int) -> None:
        """Set the pty window size. Raises ``StateError`` for a container without a tty or one
        that is not running, ``InvalidParameter`` for a size outside 1..65535."""

    @abc.abstractmethod
    def restore(self, spec: ProcessSpec) -> bool:
        """Re-adopt a container started by an earlier daemon.

        Returns True if its process is still running (``wait``, ``signal``, ``attach`` then
        work as for one this daemon started), False if it exited (``wait`` then returns the
        recorded status, or None if none was recorded).
        """

    @abc.abstractmethod
    def release(self, container_id: str) -> None:
        """Free what the driver holds for an exited container (cgroups, pty, monitor).

        Called once after each exit; safe to call again, and for an id the driver does not
        know (then it only removes leftovers). If processes of the container are still
        running they are killed first. Afterwards the driver no longer knows the container
        (``NotFound``) until the next ``start`` or ``restore``. The log and the recorded exit
        status stay in ``spec.state_dir``; core deletes that directory with the container.
        """

    def exec(self, container_id: str, spec: ExecSpec) -> ExecProcess:
        """Start ``spec`` inside the running container and return it once it runs.

        The process joins every namespace of the container (mount, pid, uts, ipc, network) and
        its cgroups (so its limits count it and ``processes`` lists it), and runs under the
        same confinement as the container's own processes (the capabilities it keeps, or all
        of them for a privileged container or ``spec.privileged``). Its output is not logged.
        It is killed with the container.

        Raises ``Impossible`` if the container is not running, ``InvalidParameter`` for an empty
        command, and ``NotSupported`` if this driver cannot run further processes in a
        container (the default). What is resolved inside the container is not an error here:
        a command that is not found exits 127, a user that does not exist or a working
        directory that cannot be entered exits 126, each with a message on its stderr.
        """
        raise NotSupported(f"the {self.name} exec driver cannot run processes in a running container")

    def pause(self, container_id: str) -> None:
        """Freeze every process of the running container (the freezer cgroup, or
        ``cgroup.freeze`` on cgroup v2); returns once they are all frozen. Pausing a paused
        container is not an error. Raises ``StateError`` if the container is not running and
        ``NotSupported`` if this driver cannot freeze on this host (the default)."""
        raise NotSupported(f"the {self.name} exec driver cannot pause containers")

    def unpause(self, container_id: str) -> None:
        """Thaw a container frozen by ``pause``; thawing one that is not frozen is not an
        error. Raises as ``pause`` does."""
        raise NotSupported(f"the {self.name} exec driver cannot unpause containers")

    def stats(self, container_id: str) -> ResourceUsage:
        """The running container's resource use, read from its cgroups. Raises ``StateError``
        if it is not running; the default reports nothing (every figure 0)."""
        return ResourceUsage()

    def memory_limits(self) -> tuple[bool, bool]:
        """Whether this driver can enforce ``Resources.memory`` and ``Resources.memory_swap``
        on this host: ``GET /info``'s ``MemoryLimit`` and ``SwapLimit``. Default: neither."""
        return False, False

    def cleanup(self) -> None:
        """Called at daemon shutdown. Running containers must keep running, keep being logged
        and have their exit recorded; a new driver object on the same home finds them with
        ``restore``. After ``cleanup`` the object may still serve calls (it restarts helpers
        it needs)."""


@hookspec
def moorage_exec_register() -> list[type[ExecDriver]]:
    """Register exec driver classes.

    :return: the ``ExecDriver`` subclasses this plugin provides; ``-e`` and the ``[exec]
        driver`` config key select one by its ``name``.

    Called once at daemon start, before any driver is instantiated.
    """
