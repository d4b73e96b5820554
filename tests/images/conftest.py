"""Fixtures for the image store tests: a real graph driver on a fresh root, per registered driver."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

from moorage.core.errors import NotSupported
from moorage.core.events import EventBus
from moorage.core.images import ImageService
from moorage.core.plugins import PluginManager


def _graph_driver_names() -> list[str]:
    pm = PluginManager()
    pm.load_entry_points()
    pm.collect_drivers()
    return pm.families["graph"].names()


@pytest.fixture(scope="session")
def btrfs_filesystem(tmp_path_factory):
    """A 512 MB loop-mounted btrfs, unmounted and detached at the end (for the btrfs driver)."""
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("mkfs.btrfs is needed (Debian package btrfs-progs)")
    base = tmp_path_factory.mktemp("images-btrfs")
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


@pytest.fixture(params=_graph_driver_names() or ["none"])
def graph_driver(request, tmp_path):
    """Each registered graph driver that works here, on a fresh root (btrfs on a loop mount)."""
    if request.param == "none":
        pytest.skip("no graph driver is registered")
    pm = PluginManager()
    pm.load_entry_points()
    pm.collect_drivers()
    family = pm.families["graph"]
    root = tmp_path / "root"
    if request.param == "btrfs":
        root = request.getfixturevalue("btrfs_filesystem") / f"root-{uuid.uuid4().hex[:8]}"
    try:
        driver = family.create(request.param, root, {}, {"root": root}, "test")
    except NotSupported as exc:
        pytest.skip(f"graph driver {request.param} is not supported here: {exc}")
    yield driver
    driver.cleanup()  # btrfs subvolumes go with the loop filesystem at the end of the session


class Hooks:
    """The lifecycle hook relay as the service sees it, recording ``moorage_image_deleted``."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def moorage_image_deleted(self, image_id: str) -> None:
        self.deleted.append(image_id)


@pytest.fixture
def store(graph_driver):
    """An ``ImageService`` on the driver's root, with an event bus and a recording hook relay."""
    root = graph_driver.context["root"]
    return ImageService(root, graph_driver, version="test", hooks=Hooks(), events=EventBus())
