"""What ADD and COPY read and how they own it: source wildcards, ``--chown`` and ``--chmod``.

Sources are found inside a root (the context, or a stage's or image's filesystem for ``COPY
--from``) and never leave it: each directory a wildcard lists and each match is resolved with
symlinks read as if the root were ``/``. ``--chown`` names are looked up in the destination
image's own ``/etc/passwd`` and ``/etc/group``, read inside its root.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from pathlib import Path

from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.sdk.untrusted_tree import entry_parts
from moorage.core.services.container_files import safe_join
from moorage.plugins.builder.add import Owner, context_source

_MAGIC = ("*", "?", "[")
#: at most this much of /etc/passwd or /etc/group is read
MAX_DB_SIZE = 1 << 20


def has_wildcard(src: str) -> bool:
    return any(c in src for c in _MAGIC)


def _glob(root: Path, parts: list[str]) -> list[str]:
    """The relative paths below ``root`` matching ``parts`` (each part a shell pattern)."""
    found = [""]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        matches = []
        for prefix in found:
            if not has_wildcard(part):
                candidate = f"{prefix}/{part}" if prefix else part
                if os.path.lexists(safe_join(root, candidate)):
                    matches.append(candidate)
                continue
            directory = safe_join(root, prefix, follow_last=True) if prefix else root
            if not directory.is_dir():
                continue
            for name in sorted(os.listdir(directory)):
                if fnmatch.fnmatchcase(name, part):
                    candidate = f"{prefix}/{name}" if prefix else name
                    if last or safe_join(root, candidate, follow_last=True).is_dir():
                        matches.append(candidate)
        found = matches
    return found


def find_sources(root: Path, src: str) -> list[tuple[str, Path]]:
    """``(name, path)`` of each path of ``root`` that ``src`` names (a wildcard may name
    several, in name order); ``NotFound`` when none."""
    if not has_wildcard(src):
        return [(src, context_source(root, src))]
    try:
        parts = entry_parts(src)
    except InvalidParameter:
        raise InvalidParameter(f"Forbidden path: {src}") from None
    matches = _glob(root, parts)
    if not matches:
        raise NotFound(f"{src}: no source files were specified")
    return [(rel, context_source(root, rel)) for rel in matches]


def parse_chmod(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        mode = int(value, 8)
    except ValueError:
        raise InvalidParameter(f"invalid chmod parameter: {value!r}: it must be an octal mode") from None
    if not 0 <= mode <= 0o7777:
        raise InvalidParameter(f"invalid chmod parameter: {value!r}: out of range")
    return mode


def _read_db(rootfs: Path, path: str) -> list[list[str]]:
    """The colon-separated lines of the image's ``path``, read inside its root; [] if absent."""
    try:
        resolved = safe_join(rootfs, path, follow_last=True)
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return []
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return []
        text = f.read(MAX_DB_SIZE).decode(errors="replace")
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def _lookup(rootfs: Path, name: str, path: str, what: str) -> tuple[int, int]:
    """``(id, primary group)`` of ``name`` (a number, or a name in ``path``'s first field)."""
    if name.isdigit():
        return int(name), int(name)
    for fields in _read_db(rootfs, path):
        if len(fields) >= 3 and fields[0] == name:
            try:
                gid = int(fields[3]) if what == "user" and len(fields) > 3 else int(fields[2])
                return int(fields[2]), gid
            except ValueError:
                break
    raise InvalidParameter(f"unable to find {what} {name}: no matching entries in {path.split('/')[-1]} file")


def lookup_owner(rootfs: Path, spec: str | None) -> Owner:
    """``--chown=user[:group]`` as ``(uid, gid)``: numbers as they are, names looked up in the
    image; a user alone gives the group of the same name or number (as Docker does)."""
    if spec is None:
        return None
    user, _, group = spec.partition(":")
    if not user or spec.count(":") > 1:
        raise InvalidParameter(f"invalid chown parameter: {spec!r}")
    uid, _ = _lookup(rootfs, user, "/etc/passwd", "user")
    gid, _ = _lookup(rootfs, group or user, "/etc/group", "group")
    return uid, gid
