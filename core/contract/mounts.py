"""Mount helpers the suites share: what is mounted below a path, and lazy unmounting."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].encode().decode("unicode_escape") for line in f]
    return sorted((p for p in points if p == prefix or p.startswith(prefix + "/")), key=len, reverse=True)


def unmount_below(path: Path) -> None:
    """Lazily unmount every mount at or below ``path``, deepest first."""
    for point in mounts_below(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
