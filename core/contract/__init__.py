"""Contract test suites, one per driver family, shipped as a pytest plugin (``pytest11``).

A third-party driver runs the suite of its family against itself by subclassing the family's
contract class in its own tests and providing the driver fixture the class asks for; see each
module's docstring. ``moorage.core.contract.rootfs`` builds the small busybox root filesystem
the suites and moorage's own tests use.
"""
