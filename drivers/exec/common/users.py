"""Resolving a container's ``User`` in its own /etc/passwd and /etc/group.

Both files come from an image nobody vetted: they are resolved inside the rootfs (a symlink
never leads out of it), read only when they are regular files, and only up to ``MAX_BYTES``
(a FIFO or a link to /dev/zero gets a clear error instead of hanging the daemon)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from moorage.core.sdk.archive import open_in_root
from moorage.core.sdk.errors import InvalidParameter

#: The largest /etc/passwd or /etc/group read.
MAX_BYTES = 4 << 20


@dataclass(frozen=True)
class Identity:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()


def _read(rootfs: Path, path: str) -> str | None:
    """The text of container file ``path`` (None if it does not exist); ``InvalidParameter`` if
    it is not a regular file or is larger than ``MAX_BYTES``."""
    try:
        handle = open_in_root(rootfs, path, os.O_PATH)  # O_PATH: opening a FIFO here cannot block
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise InvalidParameter(f"cannot read the container's {path}: {exc.strerror}") from None
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidParameter(f"the container's {path} is not a regular file")
        if info.st_size > MAX_BYTES:
            raise InvalidParameter(f"the container's {path} is larger than {MAX_BYTES} bytes")
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(handle)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise InvalidParameter(f"the container's {path} is larger than {MAX_BYTES} bytes")
    return data.decode(errors="replace")


def _entries(rootfs: Path, path: str) -> list[list[str]]:
    text = _read(rootfs, path) or ""
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve(rootfs: Path, user: str) -> Identity:
    """``""`` is root; ``name`` or ``uid`` with an optional ``:group`` (a name or gid).

    A name must exist in the container's /etc/passwd (a group name in /etc/group); a numeric
    uid or gid is used as given, with the passwd entry's primary group when there is one, else
    gid 0. Supplementary groups are those of /etc/group that list the user's name.
    """
    if not user:
        return Identity()
    name, _, group = user.partition(":")
    passwd = [e for e in _entries(rootfs, "/etc/passwd") if len(e) >= 4]
    groups = [e for e in _entries(rootfs, "/etc/group") if len(e) >= 3]
    entry = next((e for e in passwd if e[0] == name), None)
    if entry is None and name.isdigit():
        entry = next((e for e in passwd if e[2] == name), None) or [name, "x", name, "0"]
    if entry is None:
        raise InvalidParameter(f"Unable to find user {name}: no matching entries in the container's /etc/passwd")
    try:
        uid, gid = int(entry[2]), int(entry[3])
    except ValueError:
        raise InvalidParameter(f"the container's /etc/passwd has a malformed entry for {name}") from None
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if g[0] == group), None)
            if match is None:
                raise InvalidParameter(f"Unable to find group {group}: "
                                       "no matching entries in the container's /etc/group")
            gid = int(match[2])
    supplementary = tuple(sorted({int(g[2]) for g in groups if len(g) >= 4 and entry[0] in g[3].split(",")
                                  and g[2].isdigit()} - {gid}))
    return Identity(uid, gid, supplementary)
