"""Resolving a container's ``User`` in its own /etc/passwd and /etc/group."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from moorage.core.errors import InvalidParameter


@dataclass(frozen=True)
class Identity:
    uid: int = 0
    gid: int = 0
    groups: tuple[int, ...] = ()


def _entries(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return []
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
    passwd = [e for e in _entries(rootfs / "etc" / "passwd") if len(e) >= 4]
    groups = [e for e in _entries(rootfs / "etc" / "group") if len(e) >= 3]
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
