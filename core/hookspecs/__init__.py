"""Hook specifications: one module per family, the docstrings are the contract.

- ``graph``: storage of image and container layers (``moorage_graph_register``)
- ``exec``: running a container's process (``moorage_exec_register``)
- ``network``: a container's network namespace and published ports (``moorage_network_register``)
- ``registry``: talking to image registries (``moorage_registry_register``)
- ``lifecycle``: observing container and image events (``moorage_container_*``, ``moorage_image_*``)

A plugin module implements hooks with ``@hookimpl`` and is named in the ``moorage`` entry-point
group of its distribution. docs/hooks.md is generated from these modules.
"""

import pluggy

PROJECT = "moorage"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The family modules, in the order the docs list them.
FAMILY_MODULES = (
    "moorage.core.hookspecs.graph",
    "moorage.core.hookspecs.exec",
    "moorage.core.hookspecs.network",
    "moorage.core.hookspecs.registry",
    "moorage.core.hookspecs.lifecycle",
)
