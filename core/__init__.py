"""The moorage microkernel: hook specifications, plugin manager, config, state, events, ids, names.

core/ knows no driver by name: drivers arrive through the ``moorage`` entry-point group and are
selected by the names they give themselves.
"""

__version__ = "0.1.0"
