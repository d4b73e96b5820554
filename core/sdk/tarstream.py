"""Writing tars as streams of byte chunks (nothing buffered beyond one read block): ``TarWriter``,
``layer_tar`` (a change list), ``tree_tar`` (a directory) and ``tree_tar_in_root`` (one container
path), every tree walked by directory descriptors that never follow a symlink."""

from __future__ import annotations

import itertools
import os
import stat
import tarfile
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.tarformat import BLOCK, CHUNK, XATTR_PAX_PREFIX, whiteout_name
from moorage.core.sdk.untrusted_tree import (
    ConfinedTree,
    at,
    entry_parts,
    open_dir,
    open_in_root,
)


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    found = {}
    for attr in sorted(names):
        if attr.startswith("trusted.overlay."):
            continue  # overlayfs bookkeeping, translated by the overlay driver
        try:
            value = os.getxattr(path, attr, follow_symlinks=False)
        except OSError:
            continue
        found[XATTR_PAX_PREFIX + attr] = value.decode("utf-8", "surrogateescape")
    return found


class TarWriter:
    """Builds a PAX tar incrementally; each ``add_*`` returns an iterator of byte chunks."""

    def __init__(self) -> None:
        self._links: dict[tuple[int, int], str] = {}

    @staticmethod
    def _header(info: tarfile.TarInfo) -> bytes:
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def add_at(self, dir_fd: int, name: str, arcname: str, st: os.stat_result | None = None) -> Iterator[bytes]:
        """One entry for ``name`` in the directory open as ``dir_fd``, never following a
        symlink: what is read is what was examined (``st``, its lstat, when the caller has
        it), even if the tree changes meanwhile."""
        if st is None:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        content = None
        if stat.S_ISREG(st.st_mode):
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
            except OSError:
                return iter(())  # replaced by a link or removed since the lstat: leave it out
            content = os.fdopen(fd, "rb", buffering=0)  # closed when done or garbage-collected
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                content.close()
                return iter(())
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.pax_headers = _xattrs(at(dir_fd, name))
        seconds, ns = divmod(st.st_mtime_ns, 1_000_000_000)
        info.mtime = seconds
        if ns:  # exact to the nanosecond: a float would round it
            info.mtime = st.st_mtime
            info.pax_headers["mtime"] = f"{seconds}.{ns:09d}"
        mode = st.st_mode
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                info.type, info.linkname = tarfile.LNKTYPE, self._links[key]
                content.close()
                content = None
            else:
                if st.st_nlink > 1:
                    self._links[key] = arcname
                info.type, info.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
            if not info.name.endswith("/"):
                info.name += "/"
        elif stat.S_ISLNK(mode):
            try:
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
            except OSError:
                return iter(())  # no longer a symlink: leave it out
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return iter(())  # sockets have no tar form
        header = self._header(info)
        if content is None:
            return iter((header,))
        return itertools.chain((header,), self._content(content, info.size))

    @staticmethod
    def _content(f, size: int) -> Iterator[bytes]:
        with f:
            remaining = size
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:  # the file shrank while we read it: keep the header's promise
                    chunk = bytes(min(CHUNK, remaining))
                remaining -= len(chunk)
                yield chunk
        if size % BLOCK:
            yield bytes(BLOCK - size % BLOCK)

    def add_empty(self, arcname: str, mtime: float = 0) -> Iterator[bytes]:
        """An empty regular file entry (whiteouts)."""
        info = tarfile.TarInfo(arcname)
        info.mode, info.mtime = 0o644, int(mtime)
        yield self._header(info)

    @staticmethod
    def end() -> Iterator[bytes]:
        yield bytes(2 * BLOCK)



def layer_tar(root: Path | int, changes: Iterable) -> Iterator[bytes]:
    """The layer tar of ``changes`` (``Change`` objects, sorted) read from the tree ``root`` (a
    path, or a directory descriptor that stays open): added and modified paths as entries (not
    recursive), deleted ones as ``.wh.`` entries.

    Each path is reached by an ``O_NOFOLLOW`` walk: if a running container swapped a directory
    for a symlink since the change list was made, what is below it is left out, never read
    through the symlink."""
    from moorage.core.sdk.hookspecs.graph import ChangeKind

    writer = TarWriter()
    root_fd = root if isinstance(root, int) else open_dir(root)
    tree = ConfinedTree(root_fd)
    #: entries written as something other than a directory: nothing may follow below them, or
    #: the tar would not apply (a directory the container turned into a symlink meanwhile)
    not_dirs: set[str] = set()
    try:
        for change in changes:
            parts = entry_parts(change.path)
            rel = "/".join(parts)
            if any("/".join(parts[:i]) in not_dirs for i in range(1, len(parts))):
                continue
            if change.kind == ChangeKind.DELETED:
                yield from writer.add_empty(whiteout_name(rel))
                continue
            try:
                dir_fd = tree.directory(parts[:-1])
                st = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
                chunks = writer.add_at(dir_fd, parts[-1], rel, st)
            except (FileNotFoundError, InvalidParameter):
                continue  # changed since the change list was made
            if not stat.S_ISDIR(st.st_mode):
                not_dirs.add(rel)
            yield from chunks
        yield from writer.end()
    finally:
        tree.close()
        if not isinstance(root, int):
            os.close(root_fd)


def tree_tar(root: Path, arcroot: str = ".", skip: Callable[[str], bool] | None = None) -> Iterator[bytes]:
    """A tar of the whole tree at ``root`` with names under ``arcroot`` (``./etc/passwd`` for
    an export; ``arcroot="etc"`` for a copy of ``/etc``). ``skip(rel)`` leaves paths out."""
    root_s = os.fspath(root)
    if os.path.isdir(root_s) and not os.path.islink(root_s):
        fd = os.open(root_s, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return _closing(tree_tar_at(fd, ".", arcroot, skip), fd)
    fd = os.open(os.path.dirname(root_s) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return _closing(tree_tar_at(fd, os.path.basename(root_s), arcroot, skip), fd)


def _closing(chunks: Iterator[bytes], fd: int) -> Iterator[bytes]:
    try:
        yield from chunks
    finally:
        os.close(fd)


def tree_tar_at(dir_fd: int, name: str, arcroot: str = ".",
                skip: Callable[[str], bool] | None = None) -> Iterator[bytes]:
    """A tar of ``name`` (and everything below it) in the directory open as ``dir_fd``.

    The walk goes by directory file descriptors and never follows a symlink, so a directory
    that a running container swaps for a symlink while the tar streams cannot lead it out of
    the tree (a path-based walk would follow it onto the host)."""
    writer = TarWriter()

    def walk(fd: int, arc: str, rel: str) -> Iterator[bytes]:
        with os.scandir(fd) as it:
            entries = sorted(it, key=lambda e: e.name)
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            if skip is not None and skip(child_rel):
                continue
            child_arc = f"{arc}/{entry.name}"
            try:
                st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                chunks = writer.add_at(fd, entry.name, child_arc, st)
            except FileNotFoundError:
                continue
            yield from chunks
            if stat.S_ISDIR(st.st_mode):  # as the entry says: no children below a non-directory
                try:
                    child = os.open(entry.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                                    dir_fd=fd)
                except OSError:
                    continue  # replaced or removed meanwhile
                try:
                    yield from walk(child, child_arc, child_rel)
                finally:
                    os.close(child)

    yield from writer.add_at(dir_fd, name, arcroot)
    if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        top = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        try:
            yield from walk(top, arcroot.rstrip("/"), "")
        finally:
            os.close(top)
    yield from writer.end()


def tree_tar_in_root(root: Path, path: str, done: Callable[[], None] | None = None) -> Chunks:
    """A tar of the container path ``path`` (and everything below it) of the tree ``root``,
    named by its basename (``GET /containers/{id}/archive``, ``copy``).

    The parent of ``path`` is resolved as the container sees it (``openat2(RESOLVE_IN_ROOT)``)
    and the walk below it never follows a symlink. Raises ``FileNotFoundError`` at once when
    ``path`` does not exist (``done`` is called then too). The returned iterator holds a
    directory descriptor until it is exhausted, closed or dropped; ``done`` runs after that."""

    def finish() -> None:
        if dir_fd is not None:
            os.close(dir_fd)
        if done is not None:
            done()

    dir_fd = None
    try:
        parent, base = os.path.split(os.path.normpath("/" + path))
        dir_fd = open_in_root(root, parent, os.O_RDONLY | os.O_DIRECTORY)
        os.stat(base or ".", dir_fd=dir_fd, follow_symlinks=False)
    except BaseException:
        finish()
        raise
    return Chunks(tree_tar_at(dir_fd, base or ".", base or "."), finish)


class Chunks:
    """An iterator of chunks that runs ``done`` exactly once: when exhausted, when closed, or
    when garbage-collected unread (a client that hung up before the first byte)."""

    def __init__(self, chunks: Iterator[bytes], done: Callable[[], None]) -> None:
        self._chunks = chunks
        self._finalizer = weakref.finalize(self, done)

    def __iter__(self):
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()
        self._finalizer()


