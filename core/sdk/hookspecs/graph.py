"""Graph drivers: where image and container layers live.

Vocabulary. A *layer* is a directory tree identified by a string id (an image id, a container
id, or ``<image id>-init``). It is created empty or from a *parent* layer, whose visible
content it then starts with. ``get`` makes a layer's whole filesystem visible at a path (mounting
it if the driver needs to); ``put`` releases that. A layer tar is the Docker layer format:
regular tar entries for added or modified paths, and an empty ``.wh.<name>`` entry for each
deleted path (``.wh..wh..opq`` in a directory marks it opaque: nothing below it comes from the
parent).

Lifecycle of a container's layers, as core drives it::

    init = f"{image_id}-init"                # mount points: /proc, /sys, /dev/pts, /etc/hosts...
    driver.create(init, image_id)            # once per image: every container of it shares it
    driver.create(cid, init)
    rootfs = driver.get(cid)                 # at start; the exec driver pivots into it
    ...                                      # the container runs and writes into rootfs
    driver.put(cid)                          # at stop
    changes(cid, init)                       # GET /containers/{id}/changes
    diff(cid, init)                          # POST /commit: the new image's layer tar
    driver.remove(cid)                       # DELETE /containers/{id}
    driver.remove(init); driver.remove(image_id)   # DELETE /images/{name}, no container left

Diffing is the optional ``Differ`` capability: a driver that can answer from its own
bookkeeping (overlay reads only its upper directory) implements it; for the others core uses a
generic tree-comparing differ built on ``get``. Core code always goes through
``moorage.core.sdk.layers.differ_for(driver)``, which returns whichever applies. Tars are read and
written with ``moorage.core.sdk.archive`` (safe extraction, whiteouts, compression detection).

A minimal driver::

    class CopyDriver(GraphDriver):
        name = "copy"
        def create(self, id, parent): ...
        ...

    @hookimpl
    def moorage_graph_register():
        return [CopyDriver]
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from moorage.core.sdk.driver import Driver
from moorage.core.sdk.hookspecs import hookspec


class ChangeKind(enum.IntEnum):
    """The API's change kinds: ``0`` modified, ``1`` added, ``2`` deleted."""

    MODIFIED = 0
    ADDED = 1
    DELETED = 2


@dataclass(frozen=True, order=True)
class Change:
    """One changed path, absolute inside the layer (``/etc/passwd``)."""

    path: str
    kind: ChangeKind


class GraphDriver(Driver, abc.ABC):
    """Stores layers. Every method is blocking and called from core's worker threads; the
    driver must be safe for concurrent calls on *different* ids, and core never calls two
    mutating methods on the same id at once.

    ``__init__`` probes the host (the filesystem under ``home``, kernel support, tools) and
    raises ``NotSupported`` when the driver cannot work here. All of the driver's files live
    under ``home``; a new instance on the same ``home`` (a daemon restart) sees every layer.

    Layer ids are plain names (hex ids, ``<image id>-init``); a driver may refuse an id holding ``/``
    or starting with ``.`` with ``InvalidParameter``. The contract suite
    ``moorage.core.testing.graph.GraphDriverContract`` checks all of this.
    """

    @abc.abstractmethod
    def create(self, id: str, parent: str | None) -> None:
        """Create layer ``id``: empty when ``parent`` is None, else showing ``parent``'s content.

        Raises ``Conflict`` if ``id`` exists, ``NotFound`` if ``parent`` does not. On failure
        nothing of ``id`` is left behind.
        """

    @abc.abstractmethod
    def remove(self, id: str) -> None:
        """Delete layer ``id`` and everything the driver keeps for it.

        A layer that is still mounted (``get`` without ``put``) is unmounted. Once this returns
        the layer is gone (``exists`` is false, the id may be created again); the driver may
        unmount and delete its files afterwards, in the background, as long as ``cleanup``
        waits for that. Removing a parent whose children still exist is the caller's error;
        the driver may refuse it with ``Impossible``. Raises ``NotFound`` if ``id`` does not
        exist.
        """

    @abc.abstractmethod
    def get(self, id: str) -> Path:
        """Make the whole filesystem of layer ``id`` visible and return its directory.

        Reference-counted: each ``get`` needs one ``put``; the same id always gives the same
        path while it is held. Writes through the path change layer ``id`` only, never its
        parents. Raises ``NotFound`` for an unknown id, ``DriverError`` if mounting fails.
        """

    @abc.abstractmethod
    def put(self, id: str) -> None:
        """Release one ``get`` of ``id``; at zero references the driver may unmount it, then or
        later in the background (a ``get`` in between must still work).

        A ``put`` without a matching ``get`` is ignored (it must not unmount someone else's
        reference count below zero).
        """

    @abc.abstractmethod
    def exists(self, id: str) -> bool:
        """Whether layer ``id`` exists."""

    @abc.abstractmethod
    def status(self) -> list[tuple[str, str]]:
        """``[label, value]`` pairs shown in ``GET /info`` (``DriverStatus``), e.g. root dir."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Unmount everything this driver mounted; called once at daemon shutdown.

        Waits for the background work of ``put`` and ``remove``. Layers stay on disk;
        reference counts are reset. Must not raise for an already-clean
        state.
        """


class Differ(abc.ABC):
    """Optional capability of a graph driver: answer diff questions natively.

    ``parent`` is the layer ``id`` was created from (None for a base layer); a native differ
    may rely on its own record of the parent instead. Core falls back to a generic differ for
    a driver that does not inherit from this class (see ``moorage.core.sdk.layers.differ_for``).
    """

    @abc.abstractmethod
    def changes(self, id: str, parent: str | None) -> list[Change]:
        """Paths added, modified or deleted in ``id`` relative to ``parent``, sorted by path.

        A deleted directory is listed once, without its children; every path under an added
        directory is listed. Raises ``NotFound`` for an unknown layer.
        """

    @abc.abstractmethod
    def diff(self, id: str, parent: str | None) -> Iterator[bytes]:
        """The layer tar of ``id`` against ``parent`` (uncompressed PAX), as chunks of bytes.

        Added and modified paths are entries (a directory entry is not recursive), deleted ones
        empty ``.wh.<name>`` entries, an opaque directory a ``.wh..wh..opq`` entry. Modes,
        owners, mtimes (to the nanosecond), xattrs, hardlinks and devices are kept. Nothing is
        read before iteration starts; a large file never sits whole in memory.
        """

    @abc.abstractmethod
    def apply_diff(self, id: str, parent: str | None, layer: BinaryIO) -> int:
        """Apply an uncompressed layer tar to the freshly created, unmounted layer ``id``.

        Whiteouts delete (or make opaque) what ``parent`` shows. No entry may escape the
        layer: a leading ``/`` is dropped, and ``..`` climbing above the layer, an entry below
        a symlink, or a hardlink to a path outside the layer raise ``InvalidParameter``, as does
        a corrupt or truncated tar; the caller then removes the layer (what was applied before
        the bad entry stays in it). Returns the bytes of regular files written, counted per
        name (as ``diff_size``).
        """

    @abc.abstractmethod
    def diff_size(self, id: str, parent: str | None) -> int:
        """Bytes of the regular files added or modified in ``id`` relative to ``parent``
        (a file with two names counts twice; a sparse file counts its apparent size)."""


@hookspec
def moorage_graph_register() -> list[type[GraphDriver]]:
    """Register graph driver classes.

    :return: the ``GraphDriver`` subclasses this plugin provides; each names itself with its
        ``name`` attribute, which ``-s`` and the ``[graph] driver`` config key select.

    Called once at daemon start, before any driver is instantiated.
    """
