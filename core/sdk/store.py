"""The state store: every file moorage keeps is written atomically.

A write goes to a temporary file in the same directory, is fsynced, renamed over the target and
the directory is fsynced, so a daemon killed at any moment leaves either the old or the new
content, never a torn file. ``DaemonLock`` keeps two daemons off one root directory.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import threading
from pathlib import Path
from typing import Any

from moorage.core.sdk.errors import ConfigError


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes, mode: int, durable: bool) -> None:
    path = Path(path)
    # a name no other process or thread uses; one a crash left behind is truncated and reused
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if durable:
        fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` atomically and durably (write, fsync, rename, fsync dir)."""
    _replace(path, data, mode, durable=True)


def replace_file(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` atomically (temp file, rename) without forcing it to disk: for files
    derived from state that are written anew whenever they are needed (a container's hosts
    file), where a torn file can never be seen and durability buys nothing."""
    _replace(path, data, mode, durable=False)


def write_json(path: Path, value: Any, mode: int = 0o600) -> None:
    atomic_write(path, json.dumps(value, indent=1, sort_keys=False).encode() + b"\n", mode)


def write_new(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Create ``path`` with ``data`` and fsync it, for a file in a staging directory that a
    rename publishes whole (no temporary file needed). The rename followed by ``fsync_dir`` of
    the target's parent makes the directory durable; ext4, xfs and btrfs persist a new file's
    own directory entry with its fsync."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except FileNotFoundError:
        return default


def ensure_dir(path: Path, mode: int = 0o700) -> Path:
    path = Path(path)
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path


def remove_stale_temp_files(directory: Path) -> None:
    """Drop ``.*.tmp`` leftovers of writes interrupted by a crash (the targets are intact)."""
    for entry in Path(directory).glob(".*.tmp"):
        try:
            entry.unlink()
        except FileNotFoundError:
            pass


class DaemonLock:
    """An exclusive ``flock`` on ``<root>/moorage.lock``, held for the daemon's lifetime.

    The kernel drops the lock when the process dies, so a SIGKILLed daemon never leaves a
    stale lock behind; the file records the holder's pid for the error message.
    """

    def __init__(self, root: Path) -> None:
        self.path = Path(root) / "moorage.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise ConfigError(
                    f"another moorage daemon (pid {holder}) is already using the root directory "
                    f"{self.path.parent}; stop it or choose another root with -g"
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
