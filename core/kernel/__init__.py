"""The kernel: the daemon's config, plugin loading, its thread pools, lifecycle notification,
and the wiring of drivers and services in start and stop order (``kernel``, ``wiring``).

The services may use ``config``, ``lifecycle`` and ``pools``; only ``wiring`` and ``kernel``
build the services (docs/architecture.md).
"""
