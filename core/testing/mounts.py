"""Mount helpers the suites share: what is mounted below a path, and lazy unmounting."""

from __future__ import annotations

import subprocess
from pathlib import Path

from moorage.core.sdk.mounts import mounts_below


def unmount_below(path: Path) -> None:
    """Lazily unmount every mount at or below ``path``, deepest first."""
    for point in mounts_below(path):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
