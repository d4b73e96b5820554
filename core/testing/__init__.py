"""Contract test suites, one per driver family, shipped as a pytest plugin (``pytest11``).

Run a family's suite against any installed driver by name::

    pytest --pyargs moorage.core.testing --moorage-driver graph=NAME [--moorage-driver-options FILE.toml]

or from a driver package's own tests, by subclassing the family's contract class and overriding
the ``moorage_driver`` fixture (``moorage.core.testing.plugin`` describes the three fixtures
every suite shares). ``moorage.core.sdk.rootfs`` builds the small busybox root filesystem
the suites and moorage's own tests use.
"""
