"""Hostile archives (property-based, hypothesis) through the builder's paths: build contexts,
and ``ADD x.tar`` into a container root (at ``/`` and below an absolute symlink). The invariant
and the strategy are the graph drivers' (``tests/graph/test_hostile_archives.py``,
``moorage.core.testing.archives``): nothing outside the target tree changes.

``MOORAGE_HOSTILE_EXAMPLES`` sets the number of generated examples per path (CI default 40).
"""

from __future__ import annotations

import os
import shutil

import pytest

from moorage.core.testing.archives import nothing_outside_the_target_changes, plant_canaries

from .hostile_sinks import AddSink, ContextSink

EXAMPLES = int(os.environ.get("MOORAGE_HOSTILE_EXAMPLES", "40"))
PATHS = ["context", "add", "add-below-symlink"]


@pytest.fixture(params=PATHS)
def target(request, tmp_path):
    """``(sink, base)``: a way of applying archives, and the directory holding the victim."""
    base = tmp_path / "base"
    base.mkdir()
    plant_canaries(base / "victim")
    if request.param == "context":
        sink = ContextSink(base / "root")
    else:
        sink = AddSink(base / "add", "/" if request.param == "add" else "/link/y")
    yield sink, base
    shutil.rmtree(base, ignore_errors=True)


test_nothing_outside_the_target_changes = nothing_outside_the_target_changes(EXAMPLES)
