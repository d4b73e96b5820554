"""ADD's file work (reference §6.1): find the source inside the context, then copy or unpack
it into a container's root filesystem.

Neither side can be escaped. A source path that climbs out of the context with ``..`` is a
"Forbidden path"; symlinks in the context resolve as if the context were ``/`` (an absolute
link to ``/etc/passwd`` names the context's own ``etc/passwd``). In the container, every path is
resolved as the container would see it (``openat2(RESOLVE_IN_ROOT)``: absolute links point
into its root), everything is written by directory descriptor below it, existing files and
links are replaced rather than written through, and tar archives are unpacked with the
image-import rules, confined to the destination directory (``archive.extract_in_root``).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

from moorage.core.sdk.archive import extract_in_root, open_decompressed
from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.sdk.untrusted_tree import DIR_FLAGS, entry_parts, open_dir_in_root, remove_at
from moorage.core.services.container_files import safe_join

#: Docker never treated files this small as archives.
MIN_ARCHIVE_SIZE = 10


def context_source(context: Path, src: str) -> Path:
    """The context path ADD's ``src`` names, symlinks resolved inside the context."""
    try:
        parts = entry_parts(src)
    except InvalidParameter:
        raise InvalidParameter(f"Forbidden path: {src}") from None
    try:
        path = safe_join(context, "/".join(parts), follow_last=True)
    except OSError as exc:
        raise InvalidParameter(f"{src}: {exc}") from None
    if not os.path.lexists(path):
        raise NotFound(f"{src}: no such file or directory")
    return path


def container_dir(rootfs: Path, path: str) -> int:
    """A descriptor of the directory ``path`` of the container (resolved as the container
    sees it), created (mode 0755) where missing; the caller closes it."""
    return open_dir_in_root(rootfs, path, create=True)


def is_archive(path: Path) -> bool:
    """Whether the file is a tar, plain or compressed (only its first header is read)."""
    if os.path.getsize(path) < MIN_ARCHIVE_SIZE:
        return False
    try:
        with open(path, "rb") as f:
            head = open_decompressed(f).read(tarfile.BLOCKSIZE)
            tarfile.TarInfo.frombuf(head, "utf-8", "surrogateescape")
    except Exception:  # unreadable, not compressed as it claims, or no valid tar header
        return False
    return True


#: ``(uid, gid)`` that COPY/ADD ``--chown`` gives what they copy; None keeps root
Owner = tuple[int, int] | None


def _copy_metadata(fd: int, st: os.stat_result, mode: int | None, owner: Owner = None) -> None:
    if owner is not None:
        os.fchown(fd, *owner)
    os.fchmod(fd, mode if mode is not None else stat.S_IMODE(st.st_mode))
    os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))


def _copy_at(source: Path, rootfs: Path, path: str, dir_fd: int, name: str, mode: int | None = None,
             owner: Owner = None) -> None:
    """Copy ``source`` as ``name`` into the container directory open as ``dir_fd`` (whose
    container path is ``path``): a directory merges into an existing directory (a symlink to
    one is resolved inside the container's root), anything else there is replaced (removed by
    descriptor, never written through). ``mode`` and ``owner``, when given, apply to every
    file and directory copied."""
    st = os.lstat(source)
    try:
        existing = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        existing = None
    if stat.S_ISDIR(st.st_mode):
        here = posixpath.join(path, name)
        if existing is not None and stat.S_ISLNK(existing.st_mode):
            fd = container_dir(rootfs, here)  # merge into what the link names in the container
        else:
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                remove_at(dir_fd, name)
                existing = None
            if existing is None:
                os.mkdir(name, 0o755, dir_fd=dir_fd)
            fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
        try:
            for child in sorted(os.listdir(source)):
                _copy_at(source / child, rootfs, here, fd, child, mode, owner)
            _copy_metadata(fd, st, mode, owner)
        finally:
            os.close(fd)
        return
    if existing is not None:
        remove_at(dir_fd, name)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), name, dir_fd=dir_fd)
        if owner is not None:
            os.chown(name, *owner, dir_fd=dir_fd, follow_symlinks=False)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dir_fd, follow_symlinks=False)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
            out.flush()
            _copy_metadata(fd, st, mode, owner)
    # sockets, fifos and devices of the context are not copied


def copy_entry(source: Path, rootfs: Path, dest: str, mode: int | None = None, owner: Owner = None) -> None:
    """Copy the file, link or tree ``source`` to the container path ``dest`` (a directory's
    contents merge into an existing directory; anything else there is replaced). ``mode``
    overrides a file's permission bits. Everything is written by descriptor below the
    destination's directory, which is resolved inside the container's root."""
    name = posixpath.basename(dest.rstrip("/"))
    if not name:
        if stat.S_ISDIR(os.lstat(source).st_mode):
            _merge_into(source, rootfs, "/", mode, owner)
            return
        raise InvalidParameter(f"{dest}: cannot replace the container's root directory")
    parent_path = posixpath.dirname(dest.rstrip("/")) or "/"
    parent = container_dir(rootfs, parent_path)
    try:
        _copy_at(source, rootfs, parent_path, parent, name, mode, owner)
    finally:
        os.close(parent)


def _merge_into(source: Path, rootfs: Path, dest: str, mode: int | None = None, owner: Owner = None) -> None:
    """The contents of the context directory ``source`` into the container directory ``dest``."""
    fd = container_dir(rootfs, dest)
    try:
        for child in sorted(os.listdir(source)):
            _copy_at(source / child, rootfs, dest, fd, child, mode, owner)
    finally:
        os.close(fd)


def add_local(source: Path, rootfs: Path, src: str, dest: str, mode: int | None = None, owner: Owner = None,
              extract: bool = True) -> None:
    """ADD of a context path: a directory's contents go into ``dest``; an archive is unpacked
    when ``dest`` is an existing directory (unless not ``extract``: COPY); any other file is
    copied (into ``dest/`` when ``dest`` ends in ``/``)."""
    if source.is_dir() and not source.is_symlink():
        _merge_into(source, rootfs, dest, mode, owner)
        return
    existing = safe_join(rootfs, dest, follow_last=True)
    if extract and existing.is_dir() and not existing.is_symlink() and is_archive(source):
        with open(source, "rb") as f:
            extract_in_root(f, rootfs, dest, allow_devices=False)  # confined to dest, by fd
        return
    if dest.endswith("/"):
        dest = posixpath.join(dest, posixpath.basename(src.rstrip("/")))
    elif existing.is_dir() and not existing.is_symlink():
        dest = posixpath.join(dest, posixpath.basename(src.rstrip("/")))  # as cp does
    copy_entry(source, rootfs, dest, mode, owner)


def url_file_name(url: str) -> str:
    """The last path component of a URL; InvalidParameter when there is none."""
    name = posixpath.basename(urlsplit(url).path)
    if not name:
        raise InvalidParameter("cannot determine filename from url")
    return name


def add_download(downloaded: Path, rootfs: Path, url: str, dest: str, mode: int | None = None,
                 owner: Owner = None) -> None:
    """ADD of a URL: the file as downloaded, never unpacked, mode 0600 as Docker wrote it."""
    existing = safe_join(rootfs, dest, follow_last=True)
    if dest.endswith("/") or (existing.is_dir() and not existing.is_symlink()):
        dest = posixpath.join(dest, url_file_name(url))
    copy_entry(downloaded, rootfs, dest, mode=0o600 if mode is None else mode, owner=owner)
