"""The ``v2`` registry client driver (entry point ``v2`` in the ``moorage`` group)."""

from moorage.core.hookspecs import hookimpl

from .client import V2Client, V2Options


@hookimpl
def moorage_registry_register():
    return [V2Client]


__all__ = ["V2Client", "V2Options", "moorage_registry_register"]
