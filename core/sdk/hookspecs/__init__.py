"""Hook specifications: one module per family, the docstrings are the contract.

- ``graph``: storage of image and container layers (``moorage_graph_register``)
- ``exec``: running a container's process (``moorage_exec_register``)
- ``network``: a container's network namespace and published ports (``moorage_network_register``)
- ``registry``: talking to image registries (``moorage_registry_register``)
- ``volume``: named volumes, storage for data that outlives containers (``moorage_volume_register``)
- ``lifecycle``: observing container and image events (``moorage_container_*``, ``moorage_image_*``)
- ``features``: feature plugins built on the services, contributing API routes (``moorage_feature_register``)

A plugin module implements hooks with ``@hookimpl`` and is named in the ``moorage`` entry-point
group of its distribution. docs/hooks.md is generated from these modules.
"""

import pluggy

PROJECT = "moorage"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The driver families, in the order the daemon selects them and the docs list them: the one
#: list of them (the config's sections, the plugin manager's families and ``Drivers`` follow it).
DRIVER_FAMILIES = ("graph", "exec", "network", "registry", "volume")

#: The hookspec modules, in the order the docs list them.
FAMILY_MODULES = (
    *(f"moorage.core.sdk.hookspecs.{family}" for family in DRIVER_FAMILIES),
    "moorage.core.sdk.hookspecs.lifecycle",
    "moorage.core.kernel.features",
)
