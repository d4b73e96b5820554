"""Safe tar handling shared by every part of moorage that reads or writes tars.

Reading: ``open_decompressed`` detects gzip, bzip2 and xz by their magic bytes (anything else
is read as a plain tar); ``extract_layer`` applies a tar to a directory confined to it,
translating the whiteout entries (``.wh.<name>``, ``.wh..wh..opq``) through a ``Whiteouts``
strategy: ``DeleteWhiteouts`` deletes what they hide (a directory holding the whole
filesystem), ``OverlayWhiteouts`` writes overlayfs whiteouts (an upper dir).
``extract_in_root`` extracts into a container directory (``ADD x.tar``, ``PUT .../archive``).

Writing: ``TarWriter`` produces a tar as a stream of byte chunks (nothing is buffered beyond one
read block, so a 200 MB file does not sit in memory); ``layer_tar`` writes the layer tar of a
change list, ``tree_tar`` a whole directory (export) and ``tree_tar_in_root`` one container
path (copy). Every tree is walked by directory descriptors that never follow a symlink.

Safety rules of extraction (hostile archives raise ``InvalidParameter``), all enforced by the
kernel through ``moorage.core.sdk.confined`` (no path is checked as a string and then used):

- a leading ``/`` is dropped; ``..`` may not climb above the target; no NUL in a name;
- every entry is created relative to its parent directory's descriptor, reached by an
  ``O_NOFOLLOW`` walk from the target: a symlink on the way is refused, the last component is
  never followed (an existing symlink is replaced, not written through), and no path cache
  can go stale (whiteouts and opaque markers remove by descriptor too);
- a hardlink is a ``linkat`` between two descriptors of the target: only to what is in it;
- device nodes only where the caller allows them (``allow_devices``); ``trusted.overlay.*``
  xattrs never.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import io
import itertools
import lzma
import os
import shutil
import stat
import tarfile
import weakref
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from moorage.core.sdk.confined import (
    DIR_FLAGS,
    ConfinedTree,
    at,
    entry_parts,
    open_dir,
    open_dir_in_root,
    open_in_root,
    remove_at,
    resolve_in_root,  # noqa: F401  (re-exported: the lxc driver resolves mount targets with it)
)
from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
XATTR_PAX_PREFIX = "SCHILY.xattr."
OVERLAY_XATTR_PREFIX = "trusted.overlay."
OVERLAY_OPAQUE_XATTR = OVERLAY_XATTR_PREFIX + "opaque"

_CHUNK = 1 << 20
_BLOCK = tarfile.BLOCKSIZE
_SPARSE_BLOCK = 64 << 10
_MAGICS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"))


# -- compression ------------------------------------------------------------------------------
def detect_compression(head: bytes) -> str:
    """``"gzip"``, ``"bzip2"``, ``"xz"`` or ``"none"`` from the first bytes of a stream."""
    for magic, kind in _MAGICS:
        if head.startswith(magic):
            return kind
    return "none"


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were already read (to sniff them) and are served again."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer)
        if self._head:
            n = min(len(view), len(self._head))
            view[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(view))
        view[: len(data)] = data
        return len(data)


def open_decompressed(stream: BinaryIO) -> BinaryIO:
    """Wrap ``stream`` so that reading it gives the uncompressed tar, whatever its compression."""
    head = b""
    while len(head) < 6:
        more = stream.read(6 - len(head))
        if not more:
            break
        head += more
    raw = io.BufferedReader(_Prefixed(head, stream), _CHUNK)
    kind = detect_compression(head)
    if kind == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.BZ2File(raw, "rb")  # type: ignore[return-value]
    if kind == "xz":
        return lzma.LZMAFile(raw, "rb")  # type: ignore[return-value]
    return raw  # type: ignore[return-value]


# -- paths ------------------------------------------------------------------------------------
def clean_name(name: str) -> str:
    """An archive entry name as a relative path inside the target ('' is the target itself).

    Raises ``InvalidParameter`` for a NUL byte or a ``..`` that climbs above the target.
    """
    return "/".join(entry_parts(name))


def remove_path(path: str | Path) -> None:
    """Remove a file, symlink or whole directory tree (never following a symlink inside it);
    a missing path is fine."""
    parent = os.open(os.path.dirname(os.fspath(path)) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_at(parent, os.path.basename(os.fspath(path)))
    finally:
        os.close(parent)


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
        if len(buf) != _BLOCK:
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
                chunk = source.read(min(_CHUNK, remaining))
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


# -- writing ----------------------------------------------------------------------------------
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
                chunk = f.read(min(_CHUNK, remaining))
                if not chunk:  # the file shrank while we read it: keep the header's promise
                    chunk = bytes(min(_CHUNK, remaining))
                remaining -= len(chunk)
                yield chunk
        if size % _BLOCK:
            yield bytes(_BLOCK - size % _BLOCK)

    def add_empty(self, arcname: str, mtime: float = 0) -> Iterator[bytes]:
        """An empty regular file entry (whiteouts)."""
        info = tarfile.TarInfo(arcname)
        info.mode, info.mtime = 0o644, int(mtime)
        yield self._header(info)

    @staticmethod
    def end() -> Iterator[bytes]:
        yield bytes(2 * _BLOCK)


def whiteout_name(rel: str, name: str | None = None) -> str:
    """The ``.wh.`` entry name deleting ``rel`` (or marking dir ``rel`` opaque with ``name``)."""
    parent, _, base = rel.strip("/").rpartition("/")
    entry = name if name is not None else WHITEOUT_PREFIX + base
    return f"{parent}/{entry}" if parent else entry


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
            shutil.copyfileobj(content, f, _CHUNK)
            os.fchmod(f.fileno(), mode)
    finally:
        os.close(dir_fd)


class IterStream(io.RawIOBase):
    """A readable file object over an iterator of byte chunks (a diff fed to ``apply_diff``)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._buffer:
            try:
                self._buffer = next(self._chunks)
            except StopIteration:
                return 0
        view = memoryview(buffer)
        n = min(len(view), len(self._buffer))
        view[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n
