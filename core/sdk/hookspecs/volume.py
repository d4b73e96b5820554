"""Volume drivers: named storage for data, which outlives the containers that use it.

Vocabulary. A *volume* is a named directory tree a container mounts; its *name* is unique in
the daemon, whatever driver holds it. A driver makes it (``create``, with the *options* of its
own, Docker's ``DriverOpts``, and *labels*, which it only keeps), gives its host path
(``path``, the ``Mountpoint`` of the API) and makes its content visible there for one container
(``mount``) until that container lets go (``unmount``). Mounts are counted *per container*: a
volume is *in use* while any container holds a mount of it, and a volume in use cannot be
removed. The counts are state: a restarted daemon sees them as they were.

Several volume drivers serve at once: a request names its driver (``Driver`` of
``POST /volumes/create``) and the ``[volume] driver`` config key names the default one. Each
driver keeps its volumes under its own ``home``; core keeps no copy of them.

Lifecycle of a volume, as core drives it::

    volume = driver.create("db", {"type": "tmpfs", "device": "tmpfs", "o": "size=64m"}, {})
    path = driver.mount("db", container_id)     # at the container's start; bind ``path``
    ...                                         # the container writes into path
    driver.unmount("db", container_id)          # at its stop
    driver.remove("db")                         # DELETE /volumes/db: the data goes

Data is never removed but by ``remove``: not by an unmount, a ``cleanup``, a crash or a
restart.

A minimal driver::

    class DirDriver(VolumeDriver):
        name = "dirs"
        def create(self, name, options, labels): ...
        def remove(self, name): ...
        def mount(self, name, container_id): ...
        def unmount(self, name, container_id): ...
        def path(self, name): ...
        def get(self, name): ...
        def list(self): ...

    @hookimpl
    def moorage_volume_register():
        return [DirDriver]
"""

from __future__ import annotations

import abc
import builtins
import os
from dataclasses import dataclass, field
from pathlib import Path

from moorage.core.sdk.driver import Driver
from moorage.core.sdk.hookspecs import hookspec


@dataclass(frozen=True)
class Volume:
    """What a driver knows of one volume.

    ``created_at`` is RFC 3339 with seconds (``2026-01-02T03:04:05Z``); ``options`` are the
    options it was created with, as given; ``mounts`` maps each container id holding it to its
    count of mounts (empty: not in use).
    """

    name: str
    driver: str
    mountpoint: Path
    created_at: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    mounts: dict[str, int] = field(default_factory=dict)

    @property
    def in_use(self) -> bool:
        return bool(self.mounts)


class VolumeDriver(Driver, abc.ABC):
    """Holds volumes. Every method is blocking and called from core's worker threads, possibly
    concurrently, also on the same name: the driver serialises what it must.

    ``__init__`` probes the host and raises ``NotSupported`` when the driver cannot work here.
    All of the driver's state lives under ``home``, written atomically: a new instance on the
    same ``home`` (a daemon restart, after a kill at any point) sees every volume whole, with
    its mount counts, and nothing of a create or remove that did not finish. ``cleanup`` (daemon
    shutdown) leaves volumes, their data and their mounts alone: containers keep running.

    Failures: an unknown volume raises ``NotFound``; a name that exists already or a volume in
    use that is asked to go raises ``Conflict``; a malformed name or option ``InvalidParameter``
    naming it; a mount that fails ``DriverError``. The contract suite
    ``moorage.core.testing.volume.VolumeDriverContract`` checks all of this.
    """

    @abc.abstractmethod
    def create(self, name: str, options: dict[str, str], labels: dict[str, str]) -> Volume:
        """Create volume ``name`` with the driver's ``options`` (Docker's ``DriverOpts``) and
        ``labels``, and return it, not in use.

        Options are checked here, all of them, before anything is made: an unknown or
        inconsistent one raises ``InvalidParameter`` naming it. A name the driver cannot hold
        raises ``InvalidParameter``; an existing name ``Conflict``. On failure, or a crash,
        nothing of ``name`` is left behind. Once this returns the volume survives a crash.
        """

    @abc.abstractmethod
    def remove(self, name: str) -> None:
        """Delete volume ``name`` and its data.

        Raises ``NotFound`` for an unknown name and ``Conflict`` while a container holds it
        (``mounts`` not empty); nothing changes then. A crash during the removal leaves the
        volume either whole or gone, never half (a restarted driver finishes deleting what was
        on its way out). Data that is not the volume's (the host directory of a bind) is never
        deleted: whatever is mounted on the volume is unmounted first.
        """

    @abc.abstractmethod
    def mount(self, name: str, container_id: str) -> Path:
        """Make the volume's content visible at its path for container ``container_id`` and
        return that path (``path(name)``).

        Counted per container: each ``mount`` needs one ``unmount`` by the same container. A
        driver that mounts something (a tmpfs, a bind) does it at the volume's first mount and
        undoes it at its last unmount. Raises ``NotFound`` for an unknown name and
        ``DriverError`` if mounting fails (the count is then unchanged).
        """

    @abc.abstractmethod
    def unmount(self, name: str, container_id: str) -> None:
        """Release one ``mount`` of ``name`` by ``container_id``.

        An unmount without a matching mount is ignored: it never takes another container's
        count down. Raises ``NotFound`` for an unknown name. Data stays.
        """

    @abc.abstractmethod
    def path(self, name: str) -> Path:
        """The host path where the volume's content is (or will be, once mounted): the API's
        ``Mountpoint``. The same for the volume's whole life. Raises ``NotFound``."""

    @abc.abstractmethod
    def get(self, name: str) -> Volume:
        """Volume ``name``, with its mount counts. Raises ``NotFound``."""

    @abc.abstractmethod
    def list(self) -> builtins.list[Volume]:
        """Every volume this driver holds, in name order."""

    def size(self, name: str) -> int:
        """The bytes the volume's content takes, for ``UsageData``; -1 when the driver cannot
        tell (Docker's value for that). The default walks ``path(name)``, counting each file
        once (hard links) and staying on its filesystem."""
        return tree_size(self.path(name))


def tree_size(top: Path) -> int:
    """Bytes in the files below ``top`` (each inode once, symlinks not followed, one
    filesystem); -1 when ``top`` cannot be read."""
    try:
        device = os.lstat(top).st_dev
    except OSError:
        return -1
    seen: set[int] = set()
    total = 0
    for directory, dirs, files in os.walk(top):
        for entry in files:
            try:
                st = os.lstat(os.path.join(directory, entry))
            except OSError:
                continue
            if st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
        kept = []
        for entry in dirs:
            try:
                if os.lstat(os.path.join(directory, entry)).st_dev == device:
                    kept.append(entry)
            except OSError:
                continue
        dirs[:] = kept
    return total


@hookspec
def moorage_volume_register() -> list[type[VolumeDriver]]:
    """Register volume driver classes.

    :return: the ``VolumeDriver`` subclasses this plugin provides. Every registered driver
        that works on the host serves; ``POST /volumes/create`` names one by its ``name``
        (``Driver``), and the ``[volume] driver`` config key names the default (``local``).

    Called once at daemon start, before any driver is instantiated.
    """
