"""The ``btrfs`` graph driver: each layer is a subvolume in ``<home>/subvolumes/<id>``; a child
layer is a snapshot of its parent (instant, copy-on-write).

It needs ``home`` on a btrfs filesystem and says ``NotSupported`` anywhere else. Subvolumes
are made and deleted through the ``btrfsutil`` binding (no ``btrfs`` command is run). Nothing
is mounted: the subvolume directory is the layer's whole filesystem.
"""

from __future__ import annotations

import os
from pathlib import Path

from moorage.core.sdk.driver import DriverContext, FamilySettings, NoOptions
from moorage.core.sdk.errors import Conflict, DriverError, NotFound, NotSupported
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.drivers.graph.common import DirectoryLayers, RefCounts, check_id, temp_name

BTRFS_SUPER_MAGIC = 0x9123683E


def is_btrfs(path: Path) -> bool:
    import ctypes
    import ctypes.util

    class StatFs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("rest", ctypes.c_byte * 120)]

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    buf = StatFs()
    if libc.statfs(os.fsencode(path), ctypes.byref(buf)) != 0:
        return False
    return (buf.f_type & 0xFFFFFFFF) == BTRFS_SUPER_MAGIC


class BtrfsDriver(DirectoryLayers, GraphDriver):
    name = "btrfs"
    priority = 10

    def __init__(self, context: DriverContext[NoOptions, FamilySettings]) -> None:
        super().__init__(context)
        try:
            import btrfsutil
        except ImportError as exc:
            raise NotSupported(f"the btrfsutil Python binding cannot be loaded: {exc}") from None
        if not is_btrfs(self.home):
            raise NotSupported(f"{self.home} is not on a btrfs filesystem")
        self.btrfsutil = btrfsutil
        self.subvolumes = self.layers_dir = self.home / "subvolumes"
        self.subvolumes.mkdir(mode=0o700, exist_ok=True)
        self.refs = RefCounts()
        for leftover in self.subvolumes.glob(".tmp-*"):  # creations or removals cut short by a crash
            self._delete(leftover)

    def _path(self, id: str) -> Path:
        return self.subvolumes / check_id(id)

    def _delete(self, path: Path) -> None:
        try:
            if self.btrfsutil.is_subvolume(str(path)):
                self.btrfsutil.delete_subvolume(str(path), recursive=True)
            else:
                import shutil

                shutil.rmtree(path)
        except self.btrfsutil.BtrfsUtilError as exc:
            raise DriverError(f"deleting subvolume {path} failed: {exc}") from None

    def create(self, id: str, parent: str | None) -> None:
        path = self._path(id)
        if path.exists():
            raise Conflict(f"layer {id} already exists")
        tmp = self.subvolumes / temp_name(id)
        try:
            if parent is None:
                self.btrfsutil.create_subvolume(str(tmp))
                os.chmod(tmp, 0o755)
            else:
                source = self._path(parent)
                if not source.is_dir():
                    raise NotFound(f"parent layer {parent} does not exist")
                self.btrfsutil.create_snapshot(str(source), str(tmp))
            os.rename(tmp, path)
        except self.btrfsutil.BtrfsUtilError as exc:
            if tmp.exists():
                self._delete(tmp)
            raise DriverError(f"creating subvolume for layer {id} failed: {exc}") from None
        except BaseException:
            if tmp.exists():
                self._delete(tmp)
            raise

@hookimpl
def moorage_graph_register():
    return [BtrfsDriver]
