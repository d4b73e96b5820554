"""The graph driver contract suite: one behaviour suite every graph driver must pass.

Run it against an installed driver by name (``pytest --pyargs moorage.core.testing
--moorage-driver graph=NAME``), or from a driver package's own tests by subclassing
``GraphDriverContract`` and overriding ``moorage_driver`` (see ``moorage.core.testing.plugin``).
Each test gets a fresh daemon root (``driver_root``; the driver's home is below it) and builds
the driver with ``driver_factory``, as the daemon does. Afterwards every instance is cleaned up
and anything still mounted below the root is unmounted, pass or fail. The diff tests go
through ``moorage.core.sdk.layers.differ_for``, so a driver with a native ``Differ`` is checked
against the same expectations as the generic one.
"""
from moorage.core.sdk.mounts import mounts_below, unmount_below  # noqa: F401  (re-exported for drivers' own tests)
from moorage.core.testing.graph_diffs import GraphDiffsContract
from moorage.core.testing.graph_fixtures import GraphFixtures, layer_tar, populate, snapshot  # noqa: F401
from moorage.core.testing.graph_layers import GraphLayersContract


class GraphDriverContract(GraphLayersContract, GraphDiffsContract):
    """The graph contract, against ``moorage_driver``: every part."""
