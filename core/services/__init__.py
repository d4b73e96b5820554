"""The services: images, containers, running them, execs, distribution, names and events.

Each is built once by ``moorage.core.kernel.wiring`` from exactly the drivers and stores it
uses, and talks to drivers only through their family's contract (``moorage.core.sdk``).
"""
