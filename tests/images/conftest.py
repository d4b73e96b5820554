"""Fixtures for the image store tests: a real graph driver on a fresh root, per registered driver."""

from __future__ import annotations

import uuid

import pytest

from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.driver import DaemonSettings, DriverSettings
from moorage.core.sdk.errors import NotSupported
from moorage.core.services.events import EventBus
from moorage.core.services.images import ImageService


def _graph_driver_names() -> list[str]:
    pm = PluginManager()
    pm.load_entry_points()
    pm.collect_drivers()
    return pm.families["graph"].names()


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
        root = request.getfixturevalue("btrfs_mount") / f"root-{uuid.uuid4().hex[:8]}"
    try:
        driver = family.create(request.param, root, {}, DriverSettings(DaemonSettings(root), {}), "test")
    except NotSupported as exc:
        pytest.skip(f"graph driver {request.param} is not supported here: {exc}")
    yield driver
    driver.cleanup()  # btrfs subvolumes go with the loop filesystem at the end of the session


class Hooks(LifecycleHooks):
    """Lifecycle hooks whose ``image_deleted`` calls are recorded."""

    def __init__(self) -> None:
        super().__init__(PluginManager().hook)
        self.deleted: list[str] = []

    def image_deleted(self, image_id: str) -> None:
        self.deleted.append(image_id)


@pytest.fixture
def store(graph_driver):
    """An ``ImageService`` on the driver's root, with an event bus and a recording hook relay."""
    root = graph_driver.context.root
    return ImageService(root, graph_driver, version="test", hooks=Hooks(), events=EventBus())
