"""``.dockerignore``: the context paths ADD and COPY must not see, with Docker's pattern rules.

One pattern per line; empty lines and lines starting with ``#`` are skipped; a pattern is
trimmed, cleaned like a path, and a leading ``/`` is dropped. ``*`` matches any run of
characters but ``/``, ``?`` one character but ``/``, ``[...]`` a class, and ``\\`` escapes
(Go's ``path.Match`` per path component); a ``**`` component stands for any number of
directories (none included). A pattern also excludes what is below a
directory it matches. ``!pattern`` is an exception: it brings back what it matches. The last
pattern that matches a path decides.

The client (today's docker CLI, docker-py) usually filters the context already; the daemon
applies the file again for the clients that do not. The Dockerfile and ``.dockerignore`` are
sent anyway: they are read first, then removed like the rest when a pattern matches them.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from moorage.core.services.image_views import glob_match

FILE = ".dockerignore"
MAX_SIZE = 1 << 20


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool

    def matches(self, path: str) -> bool:
        return _match(self.text.split("/"), path.split("/"))


def _match(parts: list[str], path: list[str]) -> bool:
    """Whether the path components match the pattern components: ``**`` stands for any number
    of components (none included), any other component is Go's ``path.Match`` pattern."""
    if not parts:
        return not path
    if parts[0] == "**":
        return any(_match(parts[1:], path[i:]) for i in range(len(path) + 1))
    return bool(path) and glob_match(parts[0].replace("**", "*"), path[0]) and _match(parts[1:], path[1:])


def parse_patterns(text: str) -> list[Pattern]:
    patterns = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        cleaned = posixpath.normpath(line) if line else line
        if len(cleaned) > 1 and cleaned.startswith("/"):
            cleaned = cleaned.lstrip("/") or "/"
        if not cleaned or cleaned == ".":
            continue
        patterns.append(Pattern(cleaned, exclusion))
    return patterns


def excluded(patterns: list[Pattern], path: str) -> bool:
    """Whether the context path ``path`` (relative, ``/``-separated) is excluded."""
    parts = path.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue  # an exclusion only matters once matched; an inclusion only before
        hit = pattern.matches(path) or any(pattern.matches(p) for p in parents)
        if hit:
            matched = not pattern.exclusion
    return matched


def _exception_may_reach(patterns: list[Pattern], directory: str) -> bool:
    """Whether some ``!`` pattern may bring back something below ``directory``."""
    for pattern in patterns:
        if not pattern.exclusion:
            continue
        fixed = re.split(r"[*?\[\\]", pattern.text, maxsplit=1)[0]
        if fixed.startswith(directory + "/") or (directory + "/").startswith(fixed) or not fixed:
            return True
    return False


def apply(context: Path) -> list[Pattern]:
    """Remove from the context directory what its ``.dockerignore`` excludes (nothing is
    followed through a symlink); the patterns read (none without the file)."""
    ignore = context / FILE
    if not ignore.is_file() or ignore.is_symlink():
        return []
    with open(ignore, "rb") as f:
        patterns = parse_patterns(f.read(MAX_SIZE).decode(errors="replace"))
    if not patterns:
        return patterns
    for top, dirs, files in os.walk(context, topdown=True):
        rel_top = os.path.relpath(top, context)
        rel_top = "" if rel_top == "." else rel_top
        for name in files:
            rel = f"{rel_top}/{name}" if rel_top else name
            if excluded(patterns, rel):
                os.unlink(os.path.join(top, name))
        for name in list(dirs):
            rel = f"{rel_top}/{name}" if rel_top else name
            full = os.path.join(top, name)
            if os.path.islink(full):
                dirs.remove(name)  # os.walk lists links to directories as directories
                if excluded(patterns, rel):
                    os.unlink(full)
            elif excluded(patterns, rel) and not _exception_may_reach(patterns, rel):
                dirs.remove(name)
                shutil.rmtree(full)
    return patterns
