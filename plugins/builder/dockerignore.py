"""``.dockerignore``: the context paths ADD and COPY must not see, with Docker's pattern rules.

One pattern per line; empty lines and lines starting with ``#`` are skipped; a pattern is
trimmed, cleaned like a path, and a leading ``/`` is dropped. ``*`` matches any run of
characters but ``/``, ``?`` one character but ``/``, ``[...]`` a class, ``**`` any number of
directories (none included), and ``\\`` escapes. A pattern also excludes what is below a
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

FILE = ".dockerignore"
MAX_SIZE = 1 << 20


@dataclass(frozen=True)
class Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern


def _regex(pattern: str) -> re.Pattern:
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*" and pattern[i + 1:i + 2] == "*":
            i += 2
            if pattern[i:i + 1] == "/":
                i += 1
            out.append(".*" if i >= len(pattern) else "(.*/)?")
            continue
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1:end]
                body = "^" + body[1:] if body.startswith("!") else body
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    try:
        return re.compile("".join(out), re.S)
    except re.error:
        return re.compile(re.escape(pattern))  # a class Python cannot read: matched literally


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
        patterns.append(Pattern(cleaned, exclusion, _regex(cleaned)))
    return patterns


def excluded(patterns: list[Pattern], path: str) -> bool:
    """Whether the context path ``path`` (relative, ``/``-separated) is excluded."""
    parts = path.split("/")
    parents = ["/".join(parts[:i]) for i in range(1, len(parts))]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue  # an exclusion only matters once matched; an inclusion only before
        hit = bool(pattern.regex.match(path)) or any(pattern.regex.match(p) for p in parents)
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
