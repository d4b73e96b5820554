"""The build cache (reference §6.1): a step reuses a direct child of the current image whose
``container_config`` equals the config about to be used, by Docker 0.6.5's comparison rule.

ADD is cached too (Docker 0.6.5 never cached it): its image carries the hash of what was added
in its ``comment`` (``ADD_COMMENT``), and a child only matches when that hash matches too.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

ADD_COMMENT = "moorage build: ADD content sha256:{digest}"

_SCALARS = ("AttachStdout", "AttachStderr", "User", "Memory", "MemorySwap", "CpuShares", "Tty", "VolumesFrom")
_LISTS = ("Cmd", "Dns", "Env", "PortSpecs", "Entrypoint")
_KEY_SETS = ("ExposedPorts", "Volumes")


def same_config(a: dict | None, b: dict | None) -> bool:
    """Docker's ``CompareConfig``: ``Image`` and ``Hostname`` are ignored, ``OpenStdin`` on
    either side never matches, lists compare element by element (null equals empty), port and
    volume maps by their keys."""
    if a is None or b is None or a.get("OpenStdin") or b.get("OpenStdin"):
        return False
    for key in _SCALARS:
        if (a.get(key) or None) != (b.get(key) or None):  # 0, "" and False alike: Go's zero value
            return False
    for key in _LISTS:
        if list(a.get(key) or []) != list(b.get(key) or []):
            return False
    return all(set(a.get(key) or {}) == set(b.get(key) or {}) for key in _KEY_SETS)


def find_cached(images, parent_id: str, container_config: dict, comment: str = "") -> str | None:
    """The id of a child of ``parent_id`` made from an equal container config (and, for ADD,
    the same ``comment``), newest first; None on a miss."""
    candidates = []
    for child_id in images.children().get(parent_id, []):
        try:
            child = images.get(child_id)
        except Exception:  # deleted meanwhile
            continue
        if (child.comment or "") != comment:
            continue
        if same_config(child.container_config, container_config):
            candidates.append(child)
    if not candidates:
        return None
    return max(candidates, key=lambda i: (i.created, i.id)).id


def _walk(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    st = os.lstat(root)
    yield "", st
    if not stat.S_ISDIR(st.st_mode):
        return
    stack = [""]
    while stack:
        rel = stack.pop()
        directory = root / rel if rel else root
        for name in sorted(os.listdir(directory)):
            child = f"{rel}/{name}" if rel else name
            child_st = os.lstat(root / child)
            yield child, child_st
            if stat.S_ISDIR(child_st.st_mode):
                stack.append(child)


def content_hash(path: Path, *extra: str) -> str:
    """sha256 over a file or tree: names, types, permission bits, file contents and link
    targets (not times or owners: a fresh clone of the same commit hashes the same)."""
    digest = hashlib.sha256()
    for part in extra:
        digest.update(part.encode() + b"\0")
    for rel, st in _walk(path):
        size = st.st_size if stat.S_ISREG(st.st_mode) else 0
        digest.update(f"{rel}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0{size}\0".encode())
        full = path / rel if rel else path
        if stat.S_ISREG(st.st_mode):
            with open(full, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
        elif stat.S_ISLNK(st.st_mode):
            digest.update(os.readlink(full).encode())
        digest.update(b"\0")
    return digest.hexdigest()
