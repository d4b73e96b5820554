"""ADD's file work (reference §6.1): find the source inside the context, then copy or unpack
it into a container's root filesystem.

Neither side can be escaped. A source path that climbs out of the context with ``..`` is a
"Forbidden path"; symlinks in the context resolve as if the context were ``/`` (an absolute
link to ``/etc/passwd`` names the context's own ``etc/passwd``). In the container, every path is
resolved as the container would see it (``safe_join``: absolute links point into its root),
existing files and links are replaced rather than written through, and tar archives are
unpacked with the image-import rules, confined to the destination directory
(``archive.extract_in_root``).
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from urllib.parse import urlsplit

from moorage.core.archive import extract_in_root, open_decompressed, remove_path
from moorage.core.container_files import safe_join
from moorage.core.errors import InvalidParameter, NotFound

#: Docker never treated files this small as archives.
MIN_ARCHIVE_SIZE = 10


def context_source(context: Path, src: str) -> Path:
    """The context path ADD's ``src`` names, symlinks resolved inside the context."""
    parts: list[str] = []
    for part in src.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise InvalidParameter(f"Forbidden path: {src}")
            parts.pop()
        else:
            parts.append(part)
    try:
        path = safe_join(context, "/".join(parts), follow_last=True)
    except OSError as exc:
        raise InvalidParameter(f"{src}: {exc}") from None
    if not os.path.lexists(path):
        raise NotFound(f"{src}: no such file or directory")
    return path


def container_dir(rootfs: Path, path: str) -> Path:
    """The directory ``path`` of the container, created (mode 0755) where missing."""
    target = safe_join(rootfs, path, follow_last=True)
    root = Path(os.path.realpath(rootfs))
    current = root
    for part in target.relative_to(root).parts:
        current = current / part
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            os.mkdir(current, 0o755)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidParameter(f"{path}: not a directory in the container")
    return target


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


def _copy_metadata(source: Path, target: Path, st: os.stat_result) -> None:
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(target, stat.S_IMODE(st.st_mode))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def copy_entry(source: Path, rootfs: Path, dest: str, mode: int | None = None) -> None:
    """Copy the file, link or tree ``source`` to the container path ``dest`` (a directory's
    contents merge into an existing directory; anything else there is replaced). ``mode``
    overrides a file's permission bits."""
    st = os.lstat(source)
    parent = container_dir(rootfs, posixpath.dirname(dest.rstrip("/")) or "/")
    name = posixpath.basename(dest.rstrip("/"))
    if stat.S_ISDIR(st.st_mode):
        target = container_dir(rootfs, dest)
        for child in sorted(os.listdir(source)):
            copy_entry(source / child, rootfs, posixpath.join(dest, child))
        _copy_metadata(source, target, st)
        return
    if not name:
        raise InvalidParameter(f"{dest}: cannot replace the container's root directory")
    target = parent / name
    remove_path(target)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(source), target)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as out, open(source, "rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
    else:
        return  # sockets, fifos and devices of the context are not copied
    _copy_metadata(source, target, st)
    if mode is not None:
        os.chmod(target, mode)


def add_local(source: Path, rootfs: Path, src: str, dest: str) -> None:
    """ADD of a context path: a directory's contents go into ``dest``; an archive is unpacked
    when ``dest`` is an existing directory; any other file is copied (into ``dest/`` when
    ``dest`` ends in ``/``)."""
    if source.is_dir() and not source.is_symlink():
        container_dir(rootfs, dest)
        for child in sorted(os.listdir(source)):
            copy_entry(source / child, rootfs, posixpath.join(dest, child))
        return
    existing = safe_join(rootfs, dest, follow_last=True)
    if existing.is_dir() and not existing.is_symlink() and is_archive(source):
        with open(source, "rb") as f:
            extract_in_root(f, rootfs, dest, allow_devices=False)  # confined to dest, by fd
        return
    if dest.endswith("/"):
        dest = posixpath.join(dest, posixpath.basename(src.rstrip("/")))
    elif existing.is_dir() and not existing.is_symlink():
        dest = posixpath.join(dest, posixpath.basename(src.rstrip("/")))  # as cp does
    copy_entry(source, rootfs, dest)


def url_file_name(url: str) -> str:
    """The last path component of a URL; InvalidParameter when there is none."""
    name = posixpath.basename(urlsplit(url).path)
    if not name:
        raise InvalidParameter("cannot determine filename from url")
    return name


def add_download(downloaded: Path, rootfs: Path, url: str, dest: str) -> None:
    """ADD of a URL: the file as downloaded, never unpacked, mode 0600 as Docker wrote it."""
    existing = safe_join(rootfs, dest, follow_last=True)
    if dest.endswith("/") or (existing.is_dir() and not existing.is_symlink()):
        dest = posixpath.join(dest, url_file_name(url))
    copy_entry(downloaded, rootfs, dest, mode=0o600)
