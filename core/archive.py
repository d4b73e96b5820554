"""Safe tar handling shared by every part of moorage that reads or writes layer tars.

Reading: ``open_decompressed`` detects gzip, bzip2 and xz by their magic bytes (anything else
is read as a plain tar); ``extract_layer`` applies a layer tar to a directory without letting
any entry escape it, translating the whiteout entries (``.wh.<name>``, ``.wh..wh..opq``)
through a ``Whiteouts`` strategy: ``DeleteWhiteouts`` deletes what they hide (a directory
holding the whole filesystem), ``OverlayWhiteouts`` writes overlayfs whiteouts (an upper dir).

Writing: ``TarWriter`` produces a tar as a stream of byte chunks (nothing is buffered beyond one
read block, so a 200 MB file does not sit in memory); ``layer_tar`` writes the layer tar of a
change list and ``tree_tar`` a whole directory (export, copy).

Safety rules of extraction (hostile archives raise ``InvalidParameter``):

- a leading ``/`` is dropped; ``..`` may not climb above the target;
- no entry is written through a symlink: a symlink on the way to an entry is refused, the last
  component is never followed (an existing symlink is replaced, not written through);
- a hardlink must name a non-directory already inside the target, reached without symlinks;
- device nodes only where the caller allows them (``allow_devices``).
"""

from __future__ import annotations

import bz2
import ctypes
import errno
import gzip
import io
import itertools
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InvalidParameter

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
XATTR_PAX_PREFIX = "SCHILY.xattr."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"

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

    Raises ``InvalidParameter`` when ``..`` climbs above the target.
    """
    parts: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidParameter(f"archive entry {name!r} points outside the target directory")
            parts.pop()
        else:
            parts.append(part)
    return "/".join(parts)


def remove_path(path: str | Path) -> None:
    """Remove a file, symlink or whole directory tree; a missing path is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


# -- whiteout strategies ----------------------------------------------------------------------
class Whiteouts:
    """How an extraction records ``.wh.`` entries. ``target`` is the absolute path of the
    hidden entry; ``written`` tells whether this extraction itself wrote a relative path."""

    def whiteout(self, target: str) -> None:
        raise NotImplementedError

    def opaque(self, directory: str, rel: str, written: Callable[[str], bool]) -> None:
        raise NotImplementedError


class DeleteWhiteouts(Whiteouts):
    """The target holds the layer's whole filesystem: a whiteout deletes what it hides."""

    def whiteout(self, target: str) -> None:
        remove_path(target)

    def opaque(self, directory: str, rel: str, written: Callable[[str], bool]) -> None:
        for name in os.listdir(directory):
            child = f"{rel}/{name}" if rel else name
            if not written(child):
                remove_path(os.path.join(directory, name))


class OverlayWhiteouts(Whiteouts):
    """The target is an overlayfs upper dir: whiteouts become 0/0 character devices and opaque
    directories get the ``trusted.overlay.opaque`` xattr."""

    def whiteout(self, target: str) -> None:
        remove_path(target)
        os.mknod(target, 0o600 | stat.S_IFCHR, os.makedev(0, 0))

    def opaque(self, directory: str, rel: str, written: Callable[[str], bool]) -> None:
        os.setxattr(directory, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)


# -- extraction -------------------------------------------------------------------------------
class _StrictTarInfo(tarfile.TarInfo):
    """tarfile treats an archive cut off between entries as complete; a cut upload is not."""

    @classmethod
    def frombuf(cls, buf, encoding, errors):
        if len(buf) != _BLOCK:
            raise tarfile.ReadError("the archive ends without its end-of-archive marker (truncated?)")
        return super().frombuf(buf, encoding, errors)


class _Extractor:
    def __init__(self, dest: Path, whiteouts: Whiteouts, allow_devices: bool, same_owner: bool) -> None:
        self.dest = os.path.abspath(dest)
        self.whiteouts = whiteouts
        self.allow_devices = allow_devices
        self.same_owner = same_owner
        self.written: set[str] = set()
        self.real_dirs: set[str] = {""}
        self.dir_times: list[tuple[str, tarfile.TarInfo]] = []
        self.size = 0

    def abs(self, rel: str) -> str:
        return os.path.join(self.dest, rel) if rel else self.dest

    def forget(self, rel: str) -> None:
        """``rel`` is being replaced: it and everything below it are no longer known dirs."""
        prefix = rel + "/"
        self.real_dirs = {d for d in self.real_dirs if d != rel and not d.startswith(prefix)}

    def parent_dir(self, rel: str, name: str) -> str:
        """Make sure every directory above ``rel`` is a real directory inside the target."""
        parts = rel.split("/")[:-1]
        current = ""
        for part in parts:
            current = f"{current}/{part}" if current else part
            if current in self.real_dirs:
                continue
            path = self.abs(current)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                os.mkdir(path, 0o755)
                self.real_dirs.add(current)
                continue
            if stat.S_ISLNK(st.st_mode):
                raise InvalidParameter(f"archive entry {name!r} would be written through the symlink /{current}")
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidParameter(f"archive entry {name!r} is below /{current}, which is not a directory")
            self.real_dirs.add(current)
        return self.abs("/".join(parts))

    def run(self, stream: BinaryIO) -> int:
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
        for rel, member in sorted(self.dir_times, key=lambda item: item[0].count("/"), reverse=True):
            _set_mtime(self.abs(rel), member)
        return self.size

    def entry(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = member.name
        rel = clean_name(name)
        base = rel.rsplit("/", 1)[-1]
        if base.startswith(WHITEOUT_PREFIX):
            self.whiteout(rel, base, name)
            return
        if not rel:
            if member.isdir():
                self.metadata(self.dest, member)
                self.dir_times.append(("", member))
            return
        parent = self.parent_dir(rel, name)
        path = os.path.join(parent, base)
        try:
            existing = os.lstat(path)
        except FileNotFoundError:
            existing = None
        if existing is not None and not (member.isdir() and stat.S_ISDIR(existing.st_mode)):
            self.forget(rel)
            remove_path(path)
        if member.isdir():
            if existing is None or not stat.S_ISDIR(existing.st_mode):
                os.mkdir(path, 0o700)
            self.real_dirs.add(rel)
            self.dir_times.append((rel, member))
        elif member.isreg():
            self.regular(tar, member, path)
        elif member.issym():
            os.symlink(member.linkname, path)
        elif member.islnk():
            self.hardlink(member, path)
        elif member.ischr() or member.isblk():
            if not self.allow_devices:
                raise InvalidParameter(f"archive entry {name!r} is a device node, which is not allowed here")
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(path, 0o600 | kind, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(path, 0o600)
        else:
            raise InvalidParameter(f"archive entry {name!r} has an unsupported type {member.type!r}")
        self.written.add(rel)
        if not member.islnk():
            self.metadata(path, member)

    def whiteout(self, rel: str, base: str, name: str) -> None:
        parent = self.parent_dir(rel, name)
        parent_rel = rel.rpartition("/")[0]
        if base == WHITEOUT_OPAQUE:
            self.whiteouts.opaque(parent, parent_rel, self.written.__contains__)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other aufs bookkeeping entries carry nothing for us
        hidden = base[len(WHITEOUT_PREFIX):]
        if hidden in ("", ".", ".."):
            raise InvalidParameter(f"archive entry {name!r} is not a valid whiteout")
        hidden_rel = f"{parent_rel}/{hidden}" if parent_rel else hidden
        if hidden_rel in self.written:
            return  # the layer re-adds what it hides from the layers below
        self.forget(hidden_rel)
        self.whiteouts.whiteout(os.path.join(parent, hidden))

    def regular(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        source = tar.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
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
        finally:
            os.close(fd)
        self.size += member.size

    def hardlink(self, member: tarfile.TarInfo, path: str) -> None:
        target_rel = clean_name(member.linkname)
        if not target_rel:
            raise InvalidParameter(f"archive entry {member.name!r} is a hardlink to a directory")
        target_parent = self.parent_dir(target_rel, member.name)
        target = os.path.join(target_parent, target_rel.rsplit("/", 1)[-1])
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            raise InvalidParameter(f"archive entry {member.name!r} links to {member.linkname!r}, "
                                   f"which is not in the archive") from None
        if stat.S_ISDIR(st.st_mode):
            raise InvalidParameter(f"archive entry {member.name!r} is a hardlink to a directory")
        os.link(target, path, follow_symlinks=False)
        if stat.S_ISREG(st.st_mode):
            self.size += st.st_size  # sizes count every name, as a tree walk does

    def metadata(self, path: str, member: tarfile.TarInfo) -> None:
        if self.same_owner:
            os.lchown(path, member.uid, member.gid)
        for key, value in member.pax_headers.items():
            if key.startswith(XATTR_PAX_PREFIX):
                attr = key[len(XATTR_PAX_PREFIX):]
                try:
                    os.setxattr(path, attr, value.encode("utf-8", "surrogateescape"), follow_symlinks=False)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTSUP, errno.EPERM):
                        raise
        if not member.issym():
            # after chown, which clears setuid/setgid bits
            os.chmod(path, member.mode & 0o7777)
        if not member.isdir():
            _set_mtime(path, member)


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


def _set_mtime(path: str, member: tarfile.TarInfo) -> None:
    ns = mtime_ns(member)
    os.utime(path, ns=(ns, ns), follow_symlinks=False)


def extract_layer(stream: BinaryIO, dest: Path, whiteouts: Whiteouts | None = None, *,
                  allow_devices: bool = True, same_owner: bool = True) -> int:
    """Apply the uncompressed tar ``stream`` to the existing directory ``dest``.

    ``whiteouts`` says how ``.wh.`` entries are applied (default ``DeleteWhiteouts``).
    Returns the bytes of regular files written. Raises ``InvalidParameter`` for a corrupt or
    hostile archive; what was extracted before the bad entry stays, so callers extract into a
    layer they remove on failure.
    """
    extractor = _Extractor(Path(dest), whiteouts or DeleteWhiteouts(), allow_devices, same_owner)
    return extractor.run(stream)


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

    def add_path(self, path: str | Path, arcname: str) -> Iterator[bytes]:
        """One entry (not recursive) for the file, directory, link or node at ``path``.

        The path is examined at once (``FileNotFoundError`` if it vanished); the returned
        iterator streams the entry.
        """
        path = os.fspath(path)
        parent = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return self.add_at(parent, os.path.basename(path) or ".", arcname)
        finally:
            os.close(parent)

    def add_at(self, dir_fd: int, name: str, arcname: str) -> Iterator[bytes]:
        """One entry for ``name`` in the directory open as ``dir_fd``, never following a
        symlink: what is read is what was examined, even if the tree changes meanwhile."""
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
        info.pax_headers = _xattrs(f"/proc/self/fd/{dir_fd}/{name}")
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
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd)
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


def layer_tar(root: Path, changes: Iterable) -> Iterator[bytes]:
    """The layer tar of ``changes`` (``Change`` objects, sorted) read from the tree ``root``:
    added and modified paths as entries (not recursive), deleted ones as ``.wh.`` entries."""
    from .hookspecs.graph import ChangeKind

    writer = TarWriter()
    root_s = os.fspath(root)
    for change in changes:
        rel = change.path.strip("/")
        if change.kind == ChangeKind.DELETED:
            yield from writer.add_empty(whiteout_name(rel))
        else:
            yield from writer.add_path(os.path.join(root_s, rel), rel)
    yield from writer.end()


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
                yield from writer.add_at(fd, entry.name, child_arc)
            except FileNotFoundError:
                continue
            if entry.is_dir(follow_symlinks=False):
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


#: openat2(2) and its RESOLVE_IN_ROOT: the kernel resolves a path as if ``root`` were "/".
_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root: str | Path, path: str, flags: int) -> int:
    """Open ``path`` inside the tree ``root`` the way a process chrooted there would: ``..``
    and absolute symlinks stay inside ``root`` (the kernel's ``RESOLVE_IN_ROOT``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    root_fd = os.open(os.fspath(root), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
        fd = libc.syscall(_SYS_OPENAT2, root_fd, os.fsencode(path or "."), ctypes.byref(how),
                          ctypes.sizeof(how))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return fd
    finally:
        os.close(root_fd)


def resolve_in_root(root: str | Path, path: str) -> str:
    """``path`` inside ``root`` with the symlinks of its existing part resolved the way a
    process chrooted there sees them (``open_in_root``), the part that does not exist yet
    appended as it is: a path relative to ``root``, which it never leaves (``/var/run/x`` with
    ``/var/run -> /run`` gives ``run/x``). ``..`` in the missing part is refused."""
    parts = [p for p in path.split("/") if p and p != "."]
    real_root = os.path.realpath(root)
    for cut in range(len(parts), -1, -1):
        try:
            fd = open_in_root(root, "/".join(parts[:cut]), os.O_PATH)
        except FileNotFoundError:
            continue
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        if ".." in parts[cut:]:
            raise ValueError(f"the container path {path} leads outside the container")
        inside = os.path.relpath(real, real_root)
        if inside == ".." or inside.startswith("../"):
            raise ValueError(f"the container path {path} leads outside the container")
        return os.path.normpath(os.path.join(inside, *parts[cut:]))
    raise FileNotFoundError(root)


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
