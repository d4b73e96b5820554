"""The ``overlay`` graph driver: overlayfs layers with a native differ.

Layout under ``home`` (like Docker's overlay2)::

    <id>/diff      the layer's own content: the overlay upper dir when it is mounted
    <id>/work      overlayfs' work dir
    <id>/merged    the mount point of the layer's whole filesystem
    <id>/link      the layer's short name, NAME in l/NAME -> ../<id>/diff
    <id>/lower     the lower dirs, nearest first: "l/NAME1:l/NAME2" (empty for a base layer)
    <id>/flat      only for a flattened layer: a copy of its parent's whole filesystem
    l/NAME         short symlinks that keep mount options short

Creating a layer on a parent copies nothing: a new empty ``diff`` with the parent's link in
front of the parent's lower list. A base layer is never mounted (``get`` returns ``diff``).

Deep chains. The kernel takes at most one page of mount options. Lower dirs are named by
their short links, absolute when that fits, else relative to an open directory descriptor of
``home`` (``/proc/self/fd/N/l/NAME``: no ``chdir`` in a threaded daemon), which fits about 120
layers. A layer whose chain would not fit (or exceed overlayfs' 500-layer stack) is
*flattened* when it is created: its parent's whole filesystem is copied (reflinked where
possible) into ``flat``, which becomes its only lower dir. Its own ``diff`` stays the upper
dir, so its changes are still read from ``diff`` alone.

Unmounting. The kernel syncs the whole upper filesystem (``syncfs``) when an overlay is
unmounted: 1.5-4 ms on an idle machine, much more on a busy one. So ``put`` leaves the
unmount to the reaper thread (``common.Reaper``; a ``get`` in between finds the layer still
mounted and keeps it), and ``remove`` renames a still-mounted layer away with its mount and
leaves the unmount and the deletion to the reaper.

Whiteouts: overlayfs marks a deleted path with a 0/0 character device and an opaque directory
with the ``trusted.overlay.opaque="y"`` xattr; the differ translates them to and from the
``.wh.`` entries of layer tars, reading only ``diff`` (and looking paths up in the lower
dirs), so its cost grows with what changed, not with the image.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from moorage.core.sdk.archive import (
    OVERLAY_OPAQUE_XATTR,
    WHITEOUT_OPAQUE,
    OverlayWhiteouts,
    TarWriter,
    extract_layer,
    whiteout_name,
)
from moorage.core.sdk.driver import DriverContext, FamilySettings, NoOptions
from moorage.core.sdk.errors import Conflict, DriverError, InvalidParameter, NotFound, NotSupported
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.graph import Change, ChangeKind, Differ, GraphDriver
from moorage.core.sdk.layers import metadata_differs, walk_tree
from moorage.core.sdk.untrusted_tree import DIR_FLAGS, ConfinedTree, at, open_dir
from moorage.drivers.graph.common import Reaper, RefCounts, check_id, copy_tree, mount, mounts_below, temp_name, unmount

#: The kernel copies at most one page of mount data; keep a margin for the fd number.
MAX_MOUNT_DATA = 4000
#: overlayfs refuses more lower layers than this (OVL_MAX_STACK).
MAX_LOWERS = 500
LINK_DIR = "l"


def is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path: str) -> bool:
    """Whether ``path`` is an opaque directory (``at(dir_fd, name)`` for one reached by fd)."""
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def children(dir_fd: int, name: str) -> set[str]:
    """The names in directory ``name`` of ``dir_fd``; empty when it is no longer a directory."""
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP, errno.ENOTDIR):
            return set()
        raise
    try:
        return set(os.listdir(fd))
    finally:
        os.close(fd)


def lookup(lowers: list[str], rel: str) -> os.stat_result | None:
    """The lstat of ``rel`` as the stack of ``lowers`` (nearest first) shows it, or None.

    Lower dirs are image layers nothing writes to; each component is examined before the next
    one is looked up, and a symlink ends the lookup (never followed)."""
    parts = rel.split("/")
    last = len(parts) - 1
    for lower in lowers:
        path = lower
        hidden_below = False
        for i, part in enumerate(parts):
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break
            if is_whiteout(st):
                return None
            if i == last:
                return st
            if not stat.S_ISDIR(st.st_mode):
                return None  # a non-directory here hides whatever is below it
            if is_opaque(path):
                hidden_below = True
        if hidden_below:
            return None
    return None


def lower_children(lowers: list[str], rel: str) -> set[str]:
    """The names the stack of ``lowers`` shows in directory ``rel``."""
    candidates: set[str] = set()
    parts = rel.split("/") if rel else []
    for lower in lowers:
        lower_fd = open_dir(lower)
        try:
            fd = ConfinedTree(lower_fd).open_dir(parts)
        except (FileNotFoundError, InvalidParameter):
            continue
        finally:
            os.close(lower_fd)
        try:
            candidates.update(os.listdir(fd))
        finally:
            os.close(fd)
    return {name for name in candidates if lookup(lowers, f"{rel}/{name}" if rel else name) is not None}


class OverlayDriver(GraphDriver, Differ):
    name = "overlay"
    priority = 20

    def __init__(self, context: DriverContext[NoOptions, FamilySettings]) -> None:
        super().__init__(context)
        self.links = self.home / LINK_DIR
        self.links.mkdir(mode=0o700, exist_ok=True)
        self.refs = RefCounts()
        self.reaper = Reaper()
        #: layers the reaper is unmounting now (``_unmount_unused``): a ``get`` of one waits
        self._unmounting: dict[str, threading.Event] = {}
        self._probe()
        for leftover in self.home.glob(".tmp-*"):  # creations or removals cut short by a crash
            for point in mounts_below(leftover):
                unmount(point)
            shutil.rmtree(leftover, ignore_errors=True)
        for link in self.links.iterdir():
            if not link.exists():
                link.unlink()

    def _probe(self) -> None:
        with open("/proc/filesystems") as f:
            if not any(line.split()[-1] == "overlay" for line in f if line.strip()):
                raise NotSupported("the kernel has no overlay filesystem (modprobe overlay)")
        probe = Path(tempfile.mkdtemp(prefix=".probe-", dir=self.home))
        try:
            for d in ("lower", "upper", "work", "merged"):
                (probe / d).mkdir()
            try:
                mount("overlay", str(probe / "merged"), "overlay",
                      f"lowerdir={probe}/lower,upperdir={probe}/upper,workdir={probe}/work")
            except DriverError as exc:
                raise NotSupported(f"overlayfs cannot be mounted in {self.home}: {exc}") from None
            unmount(str(probe / "merged"))
        finally:
            shutil.rmtree(probe, ignore_errors=True)

    # -- layout --------------------------------------------------------------------------
    def _dir(self, id: str) -> Path:
        return self.home / check_id(id)

    def _known(self, id: str) -> Path:
        path = self._dir(id)
        if not (path / "diff").is_dir():
            raise NotFound(f"layer {id} does not exist")
        return path

    def _lower_entries(self, id: str) -> list[str]:
        text = (self._dir(id) / "lower").read_text().strip()
        return text.split(":") if text else []

    def _lowers(self, id: str) -> list[str]:
        """Absolute lower dirs of ``id``, nearest first."""
        return [str(self.home / entry) for entry in self._lower_entries(id)]

    def _new_link(self, target: str) -> str:
        while True:
            short = secrets.token_hex(5)
            try:
                os.symlink(target, self.links / short)
                return short
            except FileExistsError:
                continue

    @staticmethod
    def _data_length(entries: list[str], prefix: str, id: str) -> int:
        lowers = sum(len(prefix) + len(e) + 1 for e in entries)
        return len("lowerdir=,upperdir=,workdir=") + lowers + 2 * (len(prefix) + len(id) + 5)

    # -- GraphDriver -----------------------------------------------------------------------
    def create(self, id: str, parent: str | None) -> None:
        path = self._dir(id)
        if path.exists():
            raise Conflict(f"layer {id} already exists")
        tmp = self.home / temp_name(id)
        made_links: list[str] = []
        try:
            tmp.mkdir(mode=0o700)
            (tmp / "diff").mkdir(mode=0o755)
            (tmp / "work").mkdir(mode=0o700)
            (tmp / "merged").mkdir(mode=0o700)
            entries: list[str] = []
            if parent is not None:
                parent_dir = self._known(parent)
                parent_link = (parent_dir / "link").read_text().strip()
                entries = [f"{LINK_DIR}/{parent_link}", *self._lower_entries(parent)]
                worst_prefix = "/proc/self/fd/99999/"
                if len(entries) > MAX_LOWERS or self._data_length(entries, worst_prefix, id) > MAX_MOUNT_DATA:
                    entries = [self._flatten(id, parent, tmp, made_links)]
            (tmp / "lower").write_text(":".join(entries))
            short = self._new_link(f"../{id}/diff")
            made_links.append(short)
            (tmp / "link").write_text(short)
            os.rename(tmp, path)
        except BaseException:
            for short in made_links:
                (self.links / short).unlink(missing_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _flatten(self, id: str, parent: str, tmp: Path, made_links: list[str]) -> str:
        source = self.get(parent)
        try:
            copy_tree(source, tmp / "flat")
        finally:
            self.put(parent)
        short = self._new_link(f"../{id}/flat")
        made_links.append(short)
        (tmp / "flatlink").write_text(short)
        return f"{LINK_DIR}/{short}"

    def remove(self, id: str) -> None:
        path = self._known(id)
        with self.refs.lock:
            self.refs.drop(id)
        for name in ("link", "flatlink"):
            try:
                short = (path / name).read_text().strip()
            except FileNotFoundError:
                continue
            if short:
                (self.links / short).unlink(missing_ok=True)
        doomed = self.home / temp_name(id)
        os.rename(path, doomed)  # a mount on ``merged`` moves along: the reaper unmounts it
        self.reaper.run(self._unmount_and_delete, doomed)

    def _unmount_and_delete(self, doomed: Path) -> None:
        unmount(str(doomed / "merged"))
        shutil.rmtree(doomed, ignore_errors=True)

    def get(self, id: str) -> Path:
        path = self._known(id)
        lowers = self._lower_entries(id)
        if not lowers:
            self.refs.increment(id)
            return path / "diff"
        merged = path / "merged"
        while True:
            with self.refs.lock:
                unmounting = self._unmounting.get(id)
                if unmounting is None:
                    if self.refs.increment(id) == 1 and not os.path.ismount(merged):
                        try:
                            self._mount(id, lowers, merged)
                        except BaseException:
                            self.refs.decrement(id)
                            raise
                    return merged
            unmounting.wait()  # the reaper is unmounting this layer right now: mount it anew after

    def _mount(self, id: str, lowers: list[str], merged: Path) -> None:
        home = str(self.home)
        data = (f"lowerdir={':'.join(f'{home}/{e}' for e in lowers)},"
                f"upperdir={home}/{id}/diff,workdir={home}/{id}/work")
        if len(data) <= MAX_MOUNT_DATA:
            mount("overlay", str(merged), "overlay", data)
            return
        fd = os.open(home, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            prefix = f"/proc/self/fd/{fd}"
            data = (f"lowerdir={':'.join(f'{prefix}/{e}' for e in lowers)},"
                    f"upperdir={prefix}/{id}/diff,workdir={prefix}/{id}/work")
            mount("overlay", str(merged), "overlay", data)
        finally:
            os.close(fd)

    def put(self, id: str) -> None:
        with self.refs.lock:
            if self.refs.decrement(id) == 0 and os.path.ismount(self._dir(id) / "merged"):
                self.reaper.run(self._unmount_unused, id)

    def _unmount_unused(self, id: str) -> None:
        """(The reaper's thread.) Unmount a layer nobody got again since its last ``put``;
        outside the lock, which every ``get`` and ``put`` takes (the unmount's ``syncfs`` can
        take long), with a ``get`` of this layer waiting meanwhile."""
        merged = self._dir(id) / "merged"
        with self.refs.lock:
            if self.refs.counts.get(id, 0) or not os.path.ismount(merged):
                return
            done = self._unmounting[id] = threading.Event()
        try:
            unmount(str(merged))
        finally:
            with self.refs.lock:
                del self._unmounting[id]
            done.set()

    def exists(self, id: str) -> bool:
        return (self._dir(id) / "diff").is_dir()

    def status(self) -> list[tuple[str, str]]:
        return [("Root Dir", str(self.home)), ("Backing Filesystem", _fs_type(self.home))]

    def cleanup(self) -> None:
        self.reaper.drain()
        with self.refs.lock:
            for point in mounts_below(self.home):
                unmount(point)
            self.refs.reset()

    # -- Differ ---------------------------------------------------------------------------
    def _walk(self, id: str) -> Iterator[tuple[str, int, str, os.stat_result]]:
        """``walk_tree`` of the upper dir of ``id``: ``(rel, dir_fd, name, lstat)``, parents
        first, by directory descriptors that never follow a symlink (a running container may
        swap a directory for one while this reads)."""
        upper = open_dir(self._known(id) / "diff")
        try:
            yield from walk_tree(upper)
        finally:
            os.close(upper)

    def changes(self, id: str, parent: str | None) -> list[Change]:
        self._known(id)
        lowers = self._lowers(id)
        found: list[Change] = []
        added_dirs: set[str] = set()
        for rel, dir_fd, name, st in self._walk(id):
            parent_rel = rel.rpartition("/")[0]
            under_added = parent_rel in added_dirs
            below = None if under_added or not lowers else lookup(lowers, rel)
            if is_whiteout(st):
                if below is not None:
                    found.append(Change("/" + rel, ChangeKind.DELETED))
                continue
            if below is None:
                found.append(Change("/" + rel, ChangeKind.ADDED))
                if stat.S_ISDIR(st.st_mode):
                    added_dirs.add(rel)
                continue
            if not stat.S_ISDIR(st.st_mode) or metadata_differs(below, st):
                found.append(Change("/" + rel, ChangeKind.MODIFIED))
            if stat.S_ISDIR(st.st_mode) and stat.S_ISDIR(below.st_mode) and is_opaque(at(dir_fd, name)):
                present = children(dir_fd, name)
                for gone in sorted(lower_children(lowers, rel) - present):
                    found.append(Change(f"/{rel}/{gone}", ChangeKind.DELETED))
            elif stat.S_ISDIR(st.st_mode) and not stat.S_ISDIR(below.st_mode):
                added_dirs.add(rel)  # a directory replacing a file: all of it is new
        found.sort()
        return found

    def diff(self, id: str, parent: str | None) -> Iterator[bytes]:
        self._known(id)
        writer = TarWriter()
        for rel, dir_fd, name, st in self._walk(id):
            if is_whiteout(st):
                yield from writer.add_empty(whiteout_name(rel))
                continue
            try:
                chunks = writer.add_at(dir_fd, name, rel, st)  # the walk descends only if st is a dir
            except FileNotFoundError:
                continue  # removed since the walk listed it
            yield from chunks
            if stat.S_ISDIR(st.st_mode) and is_opaque(at(dir_fd, name)):
                yield from writer.add_empty(f"{rel}/{WHITEOUT_OPAQUE}")
        yield from writer.end()

    def apply_diff(self, id: str, parent: str | None, layer: BinaryIO) -> int:
        path = self._known(id)
        if os.path.ismount(path / "merged"):
            raise DriverError(f"layer {id} is mounted; a diff is applied only to a fresh layer")
        return extract_layer(layer, path / "diff", OverlayWhiteouts())

    def diff_size(self, id: str, parent: str | None) -> int:
        return sum(st.st_size for _, _, _, st in self._walk(id) if stat.S_ISREG(st.st_mode))


def _fs_type(path: Path) -> str:
    best, kind = "", "unknown"
    real = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            point = fields[1].encode().decode("unicode_escape")
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
                best, kind = point, fields[2]
    return kind


@hookimpl
def moorage_graph_register():
    return [OverlayDriver]
