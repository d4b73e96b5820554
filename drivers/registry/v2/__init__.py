"""The ``v2`` registry client driver (entry point ``v2`` in the ``moorage`` group)."""

from moorage.core.sdk.hookspecs import hookimpl
from moorage.drivers.registry.v2.client import V2Client, V2Options


@hookimpl
def moorage_registry_register():
    return [V2Client]


__all__ = ["V2Client", "V2Options", "moorage_registry_register"]
