"""Confined extraction: applying a tar to a directory (``extract_layer``), to a container's
directory (``extract_in_root``), and one new file into a container tree (``write_file_in_root``),
by the safety rules ``moorage.core.sdk.archive`` lists."""

from __future__ import annotations

import errno
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.sdk.tarformat import (
    BLOCK,
    CHUNK,
    OVERLAY_OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    WHITEOUT_META_PREFIX,
    WHITEOUT_OPAQUE,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    open_decompressed,
)
from moorage.core.sdk.untrusted_tree import (
    DIR_FLAGS,
    ConfinedTree,
    at,
    entry_parts,
    open_dir,
    open_dir_in_root,
    remove_at,
)

_SPARSE_BLOCK = 64 << 10


# -- whiteout strategies ----------------------------------------------------------------------
class Whiteouts:
    """How an extraction records ``.wh.`` entries, by file descriptor: ``dir_fd`` is the
    directory holding the hidden entry (or the opaque directory itself), ``rel`` that
    directory's path in the tree, ``written`` whether this extraction itself wrote a path."""

    def whiteout(self, dir_fd: int, name: str) -> None:
        raise NotImplementedError

    def opaque(self, dir_fd: int, rel: str, written: Callable[[str], bool]) -> None:
        raise NotImplementedError


class DeleteWhiteouts(Whiteouts):
    """The target holds the layer's whole filesystem: a whiteout deletes what it hides."""

    def whiteout(self, dir_fd: int, name: str) -> None:
        remove_at(dir_fd, name)

    def opaque(self, dir_fd: int, rel: str, written: Callable[[str], bool]) -> None:
        for name in os.listdir(dir_fd):
            if not written(f"{rel}/{name}" if rel else name):
                remove_at(dir_fd, name)


class OverlayWhiteouts(Whiteouts):
    """The target is an overlayfs upper dir: whiteouts become 0/0 character devices and opaque
    directories get the ``trusted.overlay.opaque`` xattr."""

    def whiteout(self, dir_fd: int, name: str) -> None:
        remove_at(dir_fd, name)
        os.mknod(name, 0o600 | stat.S_IFCHR, os.makedev(0, 0), dir_fd=dir_fd)

    def opaque(self, dir_fd: int, rel: str, written: Callable[[str], bool]) -> None:
        os.setxattr(dir_fd, OVERLAY_OPAQUE_XATTR, b"y")


# -- extraction -------------------------------------------------------------------------------
class _StrictTarInfo(tarfile.TarInfo):
    """tarfile treats an archive cut off between entries as complete; a cut upload is not."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        if len(buf) != BLOCK:
            raise tarfile.ReadError("the archive ends without its end-of-archive marker (truncated?)")
        return super().frombuf(buf, encoding, errors)


class _Extractor:
    """Applies one tar to the tree open as ``root_fd``. Every entry is created relative to the
    descriptor of its parent directory, reached by an ``O_NOFOLLOW`` walk from the root
    (``ConfinedTree``); metadata is set on the new inode's own descriptor, or by
    ``(dir_fd, name)`` without following a symlink. Nothing is looked up by path."""

    def __init__(self, root_fd: int, whiteouts: Whiteouts, allow_devices: bool, same_owner: bool) -> None:
        self.tree = ConfinedTree(root_fd)
        self.whiteouts = whiteouts
        self.allow_devices = allow_devices
        self.same_owner = same_owner
        #: what this extraction wrote: a whiteout or opaque marker never deletes it
        self.written: set[str] = set()
        self.dir_times: list[tuple[list[str], tarfile.TarInfo]] = []
        self.size = 0

    def run(self, stream: BinaryIO) -> int:
        try:
            try:
                with tarfile.open(fileobj=stream, mode="r|", errorlevel=2, tarinfo=_StrictTarInfo) as tar:
                    for member in tar:
                        self.entry(tar, member)
            except tarfile.TarError as exc:
                raise InvalidParameter(f"the archive is not a valid tar: {exc}") from None
            except (EOFError, lzma.LZMAError, zlib.error, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno is not None:
                    raise  # a real I/O error of the target, not a bad archive
                raise InvalidParameter(f"the archive is corrupt: {exc}") from None
            except UnicodeError as exc:
                raise InvalidParameter(f"the archive has an undecodable entry: {exc}") from None
            for parts, member in sorted(self.dir_times, key=lambda item: len(item[0]), reverse=True):
                self.directory_mtime(parts, member)
        finally:
            self.tree.close()
        return self.size

    def parent(self, parts: list[str], name: str) -> int:
        return self.tree.directory(parts[:-1], create=True, name=name)

    def removed(self, dir_fd: int, name: str) -> None:
        remove_at(dir_fd, name)
        self.tree.forget()  # the cached directory may have been below what was removed

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        parts = entry_parts(name)
        if not parts:
            if member.isdir():
                fd = self.tree.directory([])
                self.metadata_fd(fd, member)
                self.dir_times.append((parts, member))
            return
        base = parts[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(parts, name)
            return
        self.check_type(member)
        dir_fd = self.parent(parts, name)
        try:
            existing = os.stat(base, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            self.removed(dir_fd, base)
            dir_fd = self.parent(parts, name)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(base, 0o700, dir_fd=dir_fd)
            fd = os.open(base, DIR_FLAGS, dir_fd=dir_fd)
            try:
                self.metadata_fd(fd, member)
            finally:
                os.close(fd)
            self.dir_times.append((parts, member))
        elif member.isreg():
            self.regular(tar, member, dir_fd, base)
        elif member.islnk():
            self.hardlink(member, dir_fd, base)
        else:
            if member.issym():
                os.symlink(member.linkname, base, dir_fd=dir_fd)
            elif member.isfifo():
                os.mkfifo(base, 0o600, dir_fd=dir_fd)
            else:
                kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
                os.mknod(base, 0o600 | kind, os.makedev(member.devmajor, member.devminor), dir_fd=dir_fd)
            self.metadata_at(dir_fd, base, member)
        self.written.add("/".join(parts))

    def check_type(self, member: tarfile.TarInfo) -> None:
        if member.ischr() or member.isblk():
            if not self.allow_devices:
                raise InvalidParameter(f"archive entry {member.name!r} is a device node, which is not allowed here")
        elif not (member.isdir() or member.isreg() or member.islnk() or member.issym() or member.isfifo()):
            raise InvalidParameter(f"archive entry {member.name!r} has an unsupported type {member.type!r}")
        if member.issym() and "\0" in member.linkname:
            raise InvalidParameter(f"archive entry {member.name!r} has a NUL byte in its link target")

    def whiteout(self, parts: list[str], name: str) -> None:
        base = parts[-1]
        dir_fd = self.parent(parts, name)
        parent_rel = "/".join(parts[:-1])
        if base == WHITEOUT_OPAQUE:
            self.whiteouts.opaque(dir_fd, parent_rel, self.written.__contains__)
            self.tree.forget()
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other aufs bookkeeping entries carry nothing for us
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", ".."):
            raise InvalidParameter(f"archive entry {name!r} is not a valid whiteout")
        if "/".join([*parts[:-1], hidden]) in self.written:
            return  # the layer re-adds what it hides from the layers below
        self.whiteouts.whiteout(dir_fd, hidden)
        self.tree.forget()

    def regular(self, tar: tarfile.TarFile, member: tarfile.TarInfo, dir_fd: int, base: str) -> None:
        source = tar.extractfile(member)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(base, flags, 0o600, dir_fd=dir_fd)
        try:
            remaining = member.size
            hole = False
            while remaining > 0:
                chunk = source.read(min(CHUNK, remaining))
                if not chunk:
                    raise InvalidParameter(f"archive entry {member.name!r} is truncated")
                remaining -= len(chunk)
                hole = _write_sparse(fd, chunk)
            if hole:
                os.ftruncate(fd, member.size)
            self.metadata_fd(fd, member)
        finally:
            os.close(fd)
        self.size += member.size

    def hardlink(self, member: tarfile.TarInfo, dir_fd: int, base: str) -> None:
        """A hardlink to an entry already in the tree, reached without following a symlink:
        ``linkat`` of two (directory descriptor, name) pairs, so it cannot name a host file."""
        target = entry_parts(member.linkname)
        if not target:
            raise InvalidParameter(f"archive entry {member.name!r} is a hardlink to a directory")
        try:
            target_dir = self.tree.open_dir(target[:-1], name=member.name)
        except FileNotFoundError:
            target_dir = None
        try:
            try:
                st = None if target_dir is None else os.stat(target[-1], dir_fd=target_dir, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is None:
                raise InvalidParameter(f"archive entry {member.name!r} links to {member.linkname!r}, "
                                       f"which is not in the archive")
            if stat.S_ISDIR(st.st_mode):
                raise InvalidParameter(f"archive entry {member.name!r} is a hardlink to a directory")
            os.link(target[-1], base, src_dir_fd=target_dir, dst_dir_fd=dir_fd, follow_symlinks=False)
        finally:
            if target_dir is not None:
                os.close(target_dir)
        if stat.S_ISREG(st.st_mode):
            self.size += st.st_size  # sizes count every name, as a tree walk does

    def xattrs(self, member: tarfile.TarInfo):
        for key, value in member.pax_headers.items():
            if key.startswith(XATTR_PAX_PREFIX):
                attr = key[len(XATTR_PAX_PREFIX):]
                if attr.startswith(OVERLAY_XATTR_PREFIX) or "\0" in attr:
                    continue  # overlayfs' own bookkeeping (redirects, opaque): never from an archive
                yield attr, value.encode("utf-8", "surrogateescape")

    @staticmethod
    def _tolerant_setxattr(target, attr: str, value: bytes, **kwargs) -> None:
        try:
            os.setxattr(target, attr, value, **kwargs)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.ERANGE, errno.E2BIG):
                raise

    def metadata_fd(self, fd: int, member: tarfile.TarInfo) -> None:
        """Owner, xattrs, mode and (not for directories, set at the end) mtime of the inode
        open as ``fd``."""
        if self.same_owner:
            os.fchown(fd, member.uid, member.gid)
        for attr, value in self.xattrs(member):
            self._tolerant_setxattr(fd, attr, value)
        os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid/setgid bits
        if not member.isdir():
            ns = mtime_ns(member)
            os.utime(fd, ns=(ns, ns))

    def metadata_at(self, dir_fd: int, name: str, member: tarfile.TarInfo) -> None:
        """The same for a symlink, fifo or device node: never opened (opening a device or a fifo
        has side effects), reached as ``name`` in ``dir_fd`` without following it."""
        if self.same_owner:
            os.chown(name, member.uid, member.gid, dir_fd=dir_fd, follow_symlinks=False)
        for attr, value in self.xattrs(member):
            self._tolerant_setxattr(at(dir_fd, name), attr, value, follow_symlinks=False)
        if not member.issym():
            os.chmod(name, member.mode & 0o7777, dir_fd=dir_fd, follow_symlinks=False)
        ns = mtime_ns(member)
        os.utime(name, ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)

    def directory_mtime(self, parts: list[str], member: tarfile.TarInfo) -> None:
        ns = mtime_ns(member)
        if not parts:
            os.utime(self.tree.directory([]), ns=(ns, ns))
            return
        try:
            dir_fd = self.tree.directory(parts[:-1])
        except (FileNotFoundError, InvalidParameter):
            return  # removed or replaced by a later entry
        try:
            os.utime(parts[-1], ns=(ns, ns), dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass


def _write_sparse(fd: int, chunk: bytes) -> bool:
    """Write ``chunk``, seeking over zero blocks so sparse files stay sparse; whether it
    ended in a hole (the caller then truncates to the full size)."""
    zeros = chunk.count(0)
    if zeros == len(chunk):
        os.lseek(fd, len(chunk), os.SEEK_CUR)
        return True
    if zeros < len(chunk) // 2:
        _write_all(fd, chunk)
        return False
    hole = False
    view = memoryview(chunk)
    for start in range(0, len(chunk), _SPARSE_BLOCK):
        block = view[start:start + _SPARSE_BLOCK]
        if block.tobytes().count(0) == len(block):
            os.lseek(fd, len(block), os.SEEK_CUR)
            hole = True
        else:
            _write_all(fd, block)
            hole = False
    return hole


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def mtime_ns(member: tarfile.TarInfo) -> int:
    """The entry's mtime in nanoseconds, exact when the PAX header has the digits."""
    text = member.pax_headers.get("mtime")
    if text:
        whole, _, frac = text.partition(".")
        if whole.isdigit() and (not frac or frac.isdigit()):
            return int(whole) * 1_000_000_000 + int(frac[:9].ljust(9, "0") if frac else 0)
    return int(member.mtime * 1_000_000_000)


def extract_layer(stream: BinaryIO, dest: Path | int, whiteouts: Whiteouts | None = None, *,
                  allow_devices: bool = True, same_owner: bool = True) -> int:
    """Apply the uncompressed tar ``stream`` to the existing directory ``dest`` (a path the
    daemon chose, or an open directory descriptor, which stays open), confined to it.

    ``whiteouts`` says how ``.wh.`` entries are applied (default ``DeleteWhiteouts``).
    Returns the bytes of regular files written. Raises ``InvalidParameter`` for a corrupt or
    hostile archive; what was extracted before the bad entry stays, so callers extract into a
    layer they remove on failure.
    """
    if isinstance(dest, int):
        return _Extractor(dest, whiteouts or DeleteWhiteouts(), allow_devices, same_owner).run(stream)
    root_fd = open_dir(dest)
    try:
        return _Extractor(root_fd, whiteouts or DeleteWhiteouts(), allow_devices, same_owner).run(stream)
    finally:
        os.close(root_fd)


def extract_in_root(stream: BinaryIO, root: Path, path: str, *, create: bool = False,
                    allow_devices: bool = False, same_owner: bool = True) -> int:
    """Extract the (possibly compressed) tar ``stream`` into the directory ``path`` of the
    container tree ``root`` (``ADD x.tar``, ``PUT /containers/{id}/archive``).

    ``path`` is resolved as the container sees it (``/var/run`` -> ``/run`` stays in ``root``);
    it is made where missing with ``create``, else ``NotFound``. Whiteout entries delete what
    they name in that directory. Nothing is written outside it, whatever the archive holds.
    Raises ``InvalidParameter`` for a hostile or corrupt archive, or a ``path`` that is not a
    directory.
    """
    try:
        dir_fd = open_dir_in_root(root, path, create=create)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such directory in the container") from None
    try:
        return extract_layer(open_decompressed(stream), dir_fd, allow_devices=allow_devices, same_owner=same_owner)
    finally:
        os.close(dir_fd)



def write_file_in_root(root: Path, path: str, content: BinaryIO, mode: int) -> None:
    """Write ``content`` as the new file ``path`` of the container tree ``root`` (``insert``):
    its directory resolved as the container sees it and made where missing, the file created
    exclusively and never through a symlink. ``Conflict`` when ``path`` exists."""
    parent, base = os.path.split(os.path.normpath("/" + path))
    if not base:
        raise InvalidParameter(f"{path}: not a file path")
    dir_fd = open_dir_in_root(root, parent, create=True)
    try:
        try:
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                         dir_fd=dir_fd)
        except FileExistsError:
            raise Conflict(f"{path} exists") from None
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(content, f, CHUNK)
            os.fchmod(f.fileno(), mode)
    finally:
        os.close(dir_fd)


