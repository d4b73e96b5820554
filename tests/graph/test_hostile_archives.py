"""Hostile archives (property-based, hypothesis) through every path that applies archives: layers
on every graph driver (image import, registry pulls and commits apply them with ``apply_diff``);
the builder's paths are tests/build/test_hostile_contexts.py. The invariant: nothing outside the
target tree changes (a victim directory beside it, which the archives aim at by absolute and
relative paths, and the parent layer). Every case of issue 13 is an explicit example.

``MOORAGE_HOSTILE_EXAMPLES`` sets the number of generated examples per path (CI default 40);
``bench/fuzz_archives.py`` runs many more.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.errors import NotSupported
from moorage.core.testing.archives import LayerSink, nothing_outside_the_target_changes, plant_canaries

from .conftest import registered_graph_drivers

EXAMPLES = int(os.environ.get("MOORAGE_HOSTILE_EXAMPLES", "40"))
PATHS = ["vfs", "overlay", "btrfs"]


@pytest.fixture(params=PATHS)
def target(request, tmp_path):
    """``(sink, base)``: a way of applying archives, and the directory holding the victim."""
    base = tmp_path / "base"
    if request.param == "btrfs":
        base = request.getfixturevalue("btrfs_mount") / f"hostile-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    victim = base / "victim"
    plant_canaries(victim)
    cls = registered_graph_drivers()[request.param]
    (base / "home").mkdir()
    try:
        driver = cls(DriverContext.standalone(cls, base / "home"))
    except NotSupported as exc:
        pytest.skip(f"{request.param}: {exc}")
    yield LayerSink(driver, victim), base
    driver.cleanup()
    shutil.rmtree(base, ignore_errors=True)


test_nothing_outside_the_target_changes = nothing_outside_the_target_changes(EXAMPLES)
