"""The ``vfs`` graph driver: every layer is a full copy of its parent, in ``<home>/dir/<id>``.

It works on any filesystem, so it is the last resort of auto-selection. Creating a layer from
a parent copies it with ``cp -a --reflink=auto``: instant on filesystems with reflinks (btrfs,
xfs), otherwise a plain copy that keeps modes, owners, timestamps, xattrs, hardlinks,
symlinks, device nodes and sparse files. Nothing is mounted; ``get`` returns the directory.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from moorage.core.sdk.driver import DriverContext, FamilySettings, NoOptions
from moorage.core.sdk.errors import Conflict, NotFound
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.drivers.graph.common import DirectoryLayers, Reaper, RefCounts, check_id, copy_tree, temp_name


class VfsDriver(DirectoryLayers, GraphDriver):
    name = "vfs"
    priority = 90

    def __init__(self, context: DriverContext[NoOptions, FamilySettings]) -> None:
        super().__init__(context)
        self.dir = self.layers_dir = self.home / "dir"
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.refs = RefCounts()
        self.reaper = Reaper()
        for leftover in self.dir.glob(".tmp-*"):  # creations interrupted by a crash
            shutil.rmtree(leftover, ignore_errors=True)

    def _path(self, id: str) -> Path:
        return self.dir / check_id(id)

    def _delete(self, path: Path) -> None:
        self.reaper.delete(path)

    def cleanup(self) -> None:
        super().cleanup()
        self.reaper.drain()

    def create(self, id: str, parent: str | None) -> None:
        path = self._path(id)
        if path.exists():
            raise Conflict(f"layer {id} already exists")
        tmp = self.dir / temp_name(id)
        try:
            if parent is None:
                tmp.mkdir(mode=0o755)
            else:
                source = self._path(parent)
                if not source.is_dir():
                    raise NotFound(f"parent layer {parent} does not exist")
                copy_tree(source, tmp)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

@hookimpl
def moorage_graph_register():
    return [VfsDriver]
