"""Confined access to a directory tree that somebody else controls (a layer, a container's root
filesystem, a build context): every path is resolved by the kernel from a directory file
descriptor, never by a string check followed by a path-based call.

Two ways of resolving, for two kinds of path:

- ``ConfinedTree`` walks *entry names* (from an archive, a change list, a tree walk) one
  component at a time with ``O_NOFOLLOW``: a symlink anywhere on the way is refused, so what is
  reached is always inside the tree, even if the tree changes meanwhile (a directory swapped for
  a symlink to ``/etc`` makes the walk fail; it cannot redirect it). It keeps no paths: only
  the file descriptor of the directory it last walked to, which refers to an inode of the tree
  whatever happens to its name later.
- ``open_in_root`` resolves a *container path* (``/var/run/x``, ADD's destination) the way a
  process chrooted into the tree would, with ``openat2(RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS)``:
  absolute symlinks and ``..`` stay inside the tree.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import stat
from pathlib import Path

from moorage.core.sdk.errors import InvalidParameter

#: how every directory of a confined walk is opened: never through a symlink
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def entry_parts(name: str) -> list[str]:
    """The components of an entry name, relative to the tree (``[]`` is the tree itself).

    A leading ``/`` is dropped, ``.`` and empty components are skipped, ``..`` goes up one
    component. Raises ``InvalidParameter`` for a NUL byte or a ``..`` that climbs above the tree.
    """
    if "\0" in name:
        raise InvalidParameter(f"archive entry {name!r} has a NUL byte in its name")
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
    return parts


def remove_at(dir_fd: int, name: str) -> None:
    """Remove ``name`` (a file, a symlink, or a whole directory tree, walked by file descriptor
    and never through a symlink) from the directory open as ``dir_fd``; missing is fine."""
    for _ in range(8):  # something else may swap the entry between the lstat and the removal
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=dir_fd)  # fd-based: rmtree.avoids_symlink_attacks
            else:
                os.unlink(name, dir_fd=dir_fd)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EISDIR, errno.ENOTDIR, errno.ELOOP, None):
                raise
    raise InvalidParameter(f"{name!r} keeps changing while it is being removed")


class ConfinedTree:
    """The directory tree open as ``root_fd`` (borrowed: the caller closes it), reached only by
    ``O_NOFOLLOW`` walks from it."""

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self._last: tuple[tuple[str, ...], int] | None = None

    def close(self) -> None:
        """Close the cached directory descriptor (not ``root_fd``)."""
        self.forget()

    def forget(self) -> None:
        """Drop the cached directory descriptor: called whenever something is removed, so a
        walk never continues from a directory that is no longer in the tree."""
        if self._last is not None:
            os.close(self._last[1])
            self._last = None

    def directory(self, parts: list[str] | tuple[str, ...], *, create: bool = False, name: str = "") -> int:
        """A descriptor of the directory ``parts`` (valid until the next call of ``directory`` or
        ``forget``; do not close it).

        Missing directories are made (mode 0755) with ``create``, else ``FileNotFoundError``. A
        symlink or a non-directory on the way raises ``InvalidParameter`` naming ``name``.
        """
        key = tuple(parts)
        if self._last is not None and self._last[0] == key:
            return self._last[1]
        fd = self.open_dir(parts, create=create, name=name)
        self.forget()
        self._last = (key, fd)
        return fd

    def open_dir(self, parts: list[str] | tuple[str, ...], *, create: bool = False, name: str = "") -> int:
        """Like ``directory``, but a new descriptor the caller closes."""
        fd = os.open(".", DIR_FLAGS, dir_fd=self.root_fd)
        try:
            for i, part in enumerate(parts):
                try:
                    child = os.open(part, DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=fd)
                    except FileExistsError:
                        pass
                    child = self._open_child(fd, part, parts[: i + 1], name)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._not_a_dir(fd, part, parts[: i + 1], name) from None
                    raise
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _open_child(self, fd: int, part: str, where, name: str) -> int:
        try:
            return os.open(part, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise self._not_a_dir(fd, part, where, name) from None
            raise

    @staticmethod
    def _not_a_dir(fd: int, part: str, where, name: str) -> InvalidParameter:
        shown = "/" + "/".join(where)
        try:
            is_link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            return InvalidParameter(f"{name or shown!r} would be reached through the symlink {shown}")
        return InvalidParameter(f"{name or shown!r} is below {shown}, which is not a directory")


def at(dir_fd: int, name: str) -> str:
    """A path for ``name`` in the directory open as ``dir_fd``, for calls that take no
    descriptor (xattrs): the kernel resolves the descriptor itself, and a call that does not
    follow symlinks stops at ``name``."""
    return f"/proc/self/fd/{dir_fd}/{name}"


def open_dir(path: str | Path) -> int:
    """A directory descriptor of a path the daemon itself chose (a layer, a context dir)."""
    return os.open(os.fspath(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


# -- openat2: container paths ------------------------------------------------------------------
#: openat2(2) and its RESOLVE_IN_ROOT: the kernel resolves a path as if ``root`` were "/".
_SYS_OPENAT2 = 437
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2_in_root(root_fd: int, path: str, flags: int) -> int:
    """Open ``path`` inside the tree open as ``root_fd`` the way a process chrooted there would:
    ``..`` and absolute symlinks stay inside it (``RESOLVE_IN_ROOT``), ``/proc`` magic links are
    refused (``RESOLVE_NO_MAGICLINKS``)."""
    how = _OpenHow(flags | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(_SYS_OPENAT2, root_fd, os.fsencode(path or "."), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def open_in_root(root: str | Path, path: str, flags: int) -> int:
    """``openat2_in_root`` from the path of the tree."""
    root_fd = os.open(os.fspath(root), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return openat2_in_root(root_fd, path, flags)
    finally:
        os.close(root_fd)


def resolve_in_root(root: str | Path, path: str) -> str:
    """``path`` inside ``root`` with the symlinks of its existing part resolved the way a
    process chrooted there sees them (``open_in_root``), the part that does not exist yet
    appended as it is: a path relative to ``root``, which it never leaves (``/var/run/x`` with
    ``/var/run -> /run`` gives ``run/x``). ``..`` in the missing part is refused (ValueError)."""
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


def open_dir_in_root(root: str | Path, path: str, *, create: bool = False) -> int:
    """A descriptor of the container directory ``path`` (symlinks resolved as the container sees
    them), made (mode 0755) where missing with ``create``. ``FileNotFoundError`` when it is
    missing otherwise; ``InvalidParameter`` when it is not a directory or leads outside."""
    try:
        rel = resolve_in_root(root, path)
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None
    except NotADirectoryError:
        raise InvalidParameter(f"{path} is not a directory") from None
    root_fd = open_dir(root)
    try:
        # the resolved path is walked again without following anything: a swap in between fails
        return ConfinedTree(root_fd).open_dir(entry_parts(rel), create=create, name=path)
    finally:
        os.close(root_fd)
