"""The mount table as core, the drivers and the contract suites read it."""

from __future__ import annotations

import os
import re
from pathlib import Path

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")


def unescape(field: bytes) -> str:
    """A mountinfo path field: the kernel writes space, tab, newline and backslash as ``\\ooo``."""
    return os.fsdecode(_OCTAL_ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def mounts_below(path: Path | str) -> list[str]:
    """Mount points at or below ``path`` (symlinks resolved), deepest first: the order to
    unmount them in."""
    prefix = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        points = [unescape(line.split()[4]) for line in f]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True)
