"""Helpers the built-in graph drivers share: id checks, reference counts, mount syscalls, and
the reaper that deletes removed layers."""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import logging
import os
import secrets
import shutil
import subprocess
import threading
from pathlib import Path

from moorage.core.sdk.errors import DriverError, InvalidParameter, NotFound
from moorage.core.sdk.mounts import mounts_below  # noqa: F401 (the drivers import it from here)

log = logging.getLogger(__name__)

MNT_DETACH = 2
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def check_id(id: str) -> str:
    """Layer ids become directory names: refuse anything that is not one plain name."""
    if not id or "/" in id or "\0" in id or id.startswith(".") or len(id) > 200:
        raise InvalidParameter(f"invalid layer id {id!r}")
    return id


def temp_name(id: str) -> str:
    """A hidden sibling name for building ``id`` before renaming it into place."""
    return f".tmp-{id}-{secrets.token_hex(4)}"


def mount(source: str, target: str, fstype: str, data: str, flags: int = 0) -> None:
    if _libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode()) != 0:
        err = ctypes.get_errno()
        raise DriverError(f"mounting {fstype} on {target} failed: {os.strerror(err)}")


def unmount(target: str) -> None:
    """Unmount ``target``; lazily when it is busy. Not mounted is fine."""
    if _libc.umount2(target.encode(), 0) == 0:
        return
    err = ctypes.get_errno()
    if err == 16:  # EBUSY: a process still has it open; detach it from the tree anyway
        if _libc.umount2(target.encode(), MNT_DETACH) == 0:
            return
        err = ctypes.get_errno()
    if err in (22, 2):  # EINVAL: not a mount point; ENOENT: gone
        return
    raise DriverError(f"unmounting {target} failed: {os.strerror(err)}")


def copy_tree(source: Path, dest: Path) -> None:
    """An exact copy (modes, owners, times, xattrs, hardlinks, sparse files), reflinked where
    the filesystem can; ``dest`` must not exist."""
    proc = subprocess.run(["cp", "-a", "--reflink=auto", "-T", str(source), str(dest)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise DriverError(f"copying {source} failed: {proc.stderr.strip()}")


class RefCounts:
    """Per-id ``get`` reference counts, safe across threads."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.counts: dict[str, int] = {}

    def increment(self, id: str) -> int:
        with self.lock:
            self.counts[id] = self.counts.get(id, 0) + 1
            return self.counts[id]

    def decrement(self, id: str) -> int | None:
        """The count left, or None when ``id`` was not held (an unmatched ``put``)."""
        with self.lock:
            count = self.counts.get(id, 0)
            if count <= 0:
                return None
            if count == 1:
                del self.counts[id]
                return 0
            self.counts[id] = count - 1
            return count - 1

    def drop(self, id: str) -> None:
        with self.lock:
            self.counts.pop(id, None)

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()


class Reaper:
    """Deletes the trees of removed layers, and runs other slow cleanups, in a thread of its own.

    A driver's ``remove`` renames the layer to a ``.tmp-`` name first, so the layer is gone at
    once and its id free again; deleting the files is mostly the filesystem's work (0.15-0.2 ms
    per directory or written file on this project's ext4) and need not hold up the removal. A
    driver deletes ``.tmp-`` leftovers (a crash mid-delete) when it starts, and ``drain``s at
    cleanup.
    """

    def __init__(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="graph-reaper")
        self._pending: set[concurrent.futures.Future] = set()
        self._lock = threading.Lock()

    def delete(self, path: Path) -> None:
        self.run(self._delete, path)

    def run(self, fn, *args) -> None:
        """Run ``fn(*args)`` in the reaper's thread, after what was handed over before."""
        future = self._executor.submit(fn, *args)
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    @staticmethod
    def _delete(path: Path) -> None:
        shutil.rmtree(path, ignore_errors=True)  # what is left is deleted at the driver's next start

    def _done(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._pending.discard(future)
        if future.exception() is not None:
            log.error("background clean-up of a graph driver failed: %s", future.exception())

    def drain(self) -> None:
        """Wait until everything handed over so far is deleted."""
        with self._lock:
            pending = list(self._pending)
        concurrent.futures.wait(pending)


class DirectoryLayers:
    """``remove``, ``get``, ``put``, ``exists``, ``status`` and ``cleanup`` for graph drivers
    whose layers are directories that need no mount (vfs copies, btrfs subvolumes). A driver
    provides ``refs`` (a ``RefCounts``), ``layers_dir``, ``_path(id)`` and ``_delete(path)``."""

    refs: RefCounts
    layers_dir: Path

    def _path(self, id: str) -> Path:
        raise NotImplementedError

    def _delete(self, path: Path) -> None:
        raise NotImplementedError

    def remove(self, id: str) -> None:
        path = self._path(id)
        if not path.is_dir():
            raise NotFound(f"layer {id} does not exist")
        self.refs.drop(id)
        doomed = self.layers_dir / temp_name(id)
        os.rename(path, doomed)  # gone at once; a crash mid-delete leaves only a .tmp- entry
        self._delete(doomed)

    def get(self, id: str) -> Path:
        path = self._path(id)
        if not path.is_dir():
            raise NotFound(f"layer {id} does not exist")
        self.refs.increment(id)
        return path

    def put(self, id: str) -> None:
        self.refs.decrement(id)

    def exists(self, id: str) -> bool:
        return self._path(id).is_dir()

    def status(self) -> list[tuple[str, str]]:
        return [("Root Dir", str(self.home))]

    def cleanup(self) -> None:
        self.refs.reset()
