"""Init layers: one per image, shared by every container made from it.

A container's layer stack is ``<container id>`` on ``<image id>-init`` on the image. The init
layer holds the mount points a container needs (``/proc``, ``/sys``, ``/dev/pts``, the files
``/etc/hosts``, ``/etc/hostname``, ``/etc/resolv.conf`` are bind-mounted on...), so that changes
and commits of the container leave them out. Its content is the same for every container, as
Docker 0.6.5's single ``_dockerinit`` layer was. (Docker 0.7's graph drivers made one per
container, ``<container id>-init``; sharing it saves a layer creation, an extraction and a
layer removal per container.)

A marker ``<markers>/<image id>`` is written durably once an init layer is complete: a layer
without one was cut short by a crash and is made anew. The image service removes an image's
init layer (``remove``) before the image's own layer.
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
import threading
from pathlib import Path

from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.core.sdk.layers import differ_for
from moorage.core.sdk.store import atomic_write, ensure_dir, fsync_dir

#: The mount points an init layer holds.
INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
INIT_FILES = (".dockerinit", ".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname")


def init_layer_id(image_id: str) -> str:
    return f"{image_id}-init"


@functools.cache
def init_layer_tar() -> bytes:
    """The init layer as a layer tar, applied with the graph driver's ``apply_diff`` (no mount
    needed)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in INIT_DIRS:
            info = tarfile.TarInfo(rel)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for rel in INIT_FILES:
            info = tarfile.TarInfo(rel)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(b""))
    return out.getvalue()


class InitLayers:
    """The init layers of one graph driver. Thread-safe."""

    def __init__(self, markers: Path, graph: GraphDriver) -> None:
        self.markers = ensure_dir(markers)
        self.graph = graph
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, image_id: str) -> str:
        """The id of the image's init layer, made first if it does not exist (or is incomplete)."""
        layer = init_layer_id(image_id)
        if layer in self._ready:
            return layer
        with self._lock:
            if layer in self._ready:
                return layer
            marker = self.markers / image_id
            if not marker.exists():
                if self.graph.exists(layer):
                    self.graph.remove(layer)
                self.graph.create(layer, image_id)
                try:
                    differ_for(self.graph).apply_diff(layer, image_id, io.BytesIO(init_layer_tar()))
                    atomic_write(marker, b"")
                except BaseException:
                    self.graph.remove(layer)
                    raise
            self._ready.add(layer)
        return layer

    def remove(self, image_id: str) -> None:
        """Remove the image's init layer, if it has one; no container may still use it."""
        layer = init_layer_id(image_id)
        with self._lock:
            self._ready.discard(layer)
            marker = self.markers / image_id
            if marker.exists():
                os.unlink(marker)  # first: a crash from here on leaves a layer that is made anew
                fsync_dir(self.markers)
            if self.graph.exists(layer):
                self.graph.remove(layer)
