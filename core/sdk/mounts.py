"""The mount table as core, the drivers, the bench and the contract suites read it, and the
cgroup hierarchy mounted at ``/sys/fs/cgroup``."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")
CGROUP_ROOT = Path("/sys/fs/cgroup")


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


def unmount_below(path: Path | str) -> None:
    """Lazily unmount every mount at or below ``path``, deepest first (what a scratch root, a
    test's or a bench run's, leaves behind). ``umount -l`` rather than ``umount2``: a point
    that is already gone, or busy, is no error here."""
    for point in mounts_below(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def unified() -> bool:
    """Whether this host's ``/sys/fs/cgroup`` is the cgroup v2 (unified) hierarchy."""
    return (CGROUP_ROOT / "cgroup.controllers").exists()
