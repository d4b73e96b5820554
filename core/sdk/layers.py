"""Diffing layers for any graph driver: ``differ_for(driver)`` is the one entry point for core.

A driver that implements the ``Differ`` capability answers itself; for the others
``NaiveDiffer`` compares the layer's tree with its parent's through ``get``/``put`` (Docker
0.7's generic fallback):

- *modified*: mode (type and permissions), uid, gid, rdev or mtime differ, or the size of a
  non-directory; inode numbers and ctime are ignored (every copy has new ones);
- *added*: only in the layer; every path under an added directory is listed too;
- *deleted*: only in the parent; a deleted directory is listed once, without its children.

The cost grows with the size of both trees, which is why drivers that can do better
(overlay reads only its upper directory) implement ``Differ`` themselves.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from moorage.core.sdk.archive import DeleteWhiteouts, extract_layer, layer_tar
from moorage.core.sdk.hookspecs.graph import Change, ChangeKind, Differ, GraphDriver
from moorage.core.sdk.untrusted_tree import DIR_FLAGS, open_dir


def differ_for(driver: GraphDriver) -> Differ:
    """The driver itself when it implements ``Differ``, else a ``NaiveDiffer`` over it."""
    if isinstance(driver, Differ):
        return driver
    return NaiveDiffer(driver)


def walk_tree(root_fd: int) -> Iterator[tuple[str, int, str, os.stat_result]]:
    """``(rel, dir_fd, name, lstat)`` of everything below the directory open as ``root_fd``,
    parents before their children, names sorted in each directory. ``dir_fd`` is valid while
    the item is being handled.

    The walk goes by directory descriptors opened with ``O_NOFOLLOW``: a directory that a
    running container swaps for a symlink meanwhile is listed as whatever its name shows when
    it is examined, and the walk never continues through a symlink onto the host."""
    stack: list[tuple[str, int, Iterator[str]]] = []

    def enter(rel: str, fd: int) -> None:
        stack.append((rel, fd, iter(sorted(os.listdir(fd)))))

    enter("", os.open(".", DIR_FLAGS, dir_fd=root_fd))
    try:
        while stack:
            rel, fd, names = stack[-1]
            name = next(names, None)
            if name is None:
                os.close(fd)
                stack.pop()
                continue
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            child = f"{rel}/{name}" if rel else name
            yield child, fd, name, st
            if stat.S_ISDIR(st.st_mode):
                try:
                    enter(child, os.open(name, DIR_FLAGS, dir_fd=fd))
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
                        raise  # else: removed or replaced since its lstat, nothing below to list
    finally:
        for _, fd, _ in stack:
            os.close(fd)


def scan_tree(root: str | int) -> dict[str, os.stat_result]:
    """Relative path -> lstat of everything below ``root`` (a path or a directory descriptor;
    not ``root`` itself), walked by ``walk_tree``."""
    root_fd = root if isinstance(root, int) else open_dir(root)
    try:
        return {rel: st for rel, _, _, st in walk_tree(root_fd)}
    finally:
        if not isinstance(root, int):
            os.close(root_fd)


def metadata_differs(old: os.stat_result, new: os.stat_result) -> bool:
    if (old.st_mode != new.st_mode or old.st_uid != new.st_uid or old.st_gid != new.st_gid
            or old.st_rdev != new.st_rdev or old.st_mtime_ns != new.st_mtime_ns):
        return True
    return not stat.S_ISDIR(new.st_mode) and old.st_size != new.st_size


def compare_trees(new_root: str | int, old_root: str | int | None) -> tuple[list[Change], dict[str, os.stat_result]]:
    """The sorted change list of ``new_root`` against ``old_root`` (None: everything added),
    and the lstat of every path in ``new_root``."""
    new = scan_tree(new_root)
    old = scan_tree(old_root) if old_root is not None else {}
    changes: list[Change] = []
    for rel, st in new.items():
        before = old.get(rel)
        if before is None:
            changes.append(Change("/" + rel, ChangeKind.ADDED))
        elif metadata_differs(before, st):
            changes.append(Change("/" + rel, ChangeKind.MODIFIED))
    for rel in old:
        if rel in new:
            continue
        parent = rel.rpartition("/")[0]
        if parent and parent not in new:
            continue  # below a deleted directory: the directory is listed instead
        changes.append(Change("/" + rel, ChangeKind.DELETED))
    changes.sort()
    return changes, new


class NaiveDiffer(Differ):
    """The ``Differ`` capability for any ``GraphDriver``, built on ``get``/``put``."""

    def __init__(self, driver: GraphDriver) -> None:
        self.driver = driver

    @contextmanager
    def _held(self, id: str | None) -> Iterator[int | None]:
        """A directory descriptor of the layer's whole filesystem, held (``get``) meanwhile."""
        if id is None:
            yield None
            return
        path = self.driver.get(id)
        try:
            fd = open_dir(path)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            self.driver.put(id)

    def _compare(self, id: str, parent: str | None) -> tuple[list[Change], dict[str, os.stat_result]]:
        with self._held(id) as new, self._held(parent) as old:
            return compare_trees(new, old)

    def changes(self, id: str, parent: str | None) -> list[Change]:
        return self._compare(id, parent)[0]

    def diff(self, id: str, parent: str | None) -> Iterator[bytes]:
        with self._held(id) as new:
            with self._held(parent) as old:
                changes, _ = compare_trees(new, old)
            yield from layer_tar(new, changes)

    def apply_diff(self, id: str, parent: str | None, layer: BinaryIO) -> int:
        with self._held(id) as fd:
            return extract_layer(layer, fd, DeleteWhiteouts())

    def diff_size(self, id: str, parent: str | None) -> int:
        changes, stats = self._compare(id, parent)
        total = 0
        for change in changes:
            if change.kind != ChangeKind.DELETED:
                st = stats[change.path[1:]]
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
        return total
