"""Fixtures of the graph driver tests: the built-in drivers and a loop-mounted btrfs."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from moorage.core.plugins import PluginManager

BUILTIN = ("vfs", "overlay", "btrfs")


def registered_graph_drivers() -> dict[str, type]:
    """The graph driver classes moorage's own entry points register."""
    pm = PluginManager()
    pm.load_entry_points(autoload=False)
    pm.collect_drivers()
    family = pm.families["graph"]
    return {name: family.get(name) for name in family.names()}


@pytest.fixture(scope="session")
def btrfs_mount(tmp_path_factory):
    """A 512 MB btrfs filesystem on a loop device, unmounted and detached at the end."""
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("mkfs.btrfs is needed (Debian package btrfs-progs)")
    base = tmp_path_factory.mktemp("btrfs")
    image, mountpoint = base / "fs.img", base / "mnt"
    mountpoint.mkdir()
    subprocess.run(["truncate", "-s", "512M", str(image)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        subprocess.run(["mount", "-t", "btrfs", loop, str(mountpoint)], check=True)
        try:
            yield mountpoint
        finally:
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True)
        image.unlink(missing_ok=True)


@pytest.fixture
def btrfs_home(btrfs_mount) -> Path:
    return btrfs_mount / f"home-{uuid.uuid4().hex[:8]}"
