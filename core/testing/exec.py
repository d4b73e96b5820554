"""The exec driver contract suite: the behaviour every exec driver must show.

Run it against an installed driver by name (``pytest --pyargs moorage.core.testing
--moorage-driver exec=NAME``), or from a driver package's own tests by subclassing
``ExecDriverContract`` and overriding ``moorage_driver`` (see ``moorage.core.testing.plugin``);
``ExecFixtures`` gives a driver's own extra tests the same fixtures.

The tests build specs with the ``make_spec`` fixture (a fresh copy of the session's busybox
rootfs per spec, from ``busybox_rootfs`` of ``moorage.core.testing.plugin``) and start
containers through ``runner``, whose finalizer kills, waits for and releases every container the
test started, even when the test fails, and then checks that nothing is left behind: no process,
no cgroup named after the container, no mount below its rootfs. ``runner.restart_daemon()``
shuts the driver down and builds a new one on the same root, as a restarted daemon does.
"""
from moorage.core.testing.exec_fixtures import (  # noqa: F401  (the suites' helpers, importable from here)
    ENV,
    ExecFixtures,
    Runner,
    alive,
    cap_bits,
    cgroup_file,
    cgroups_named,
    joined,
    log_text,
    read_all,
    wait_for,
)
from moorage.core.testing.exec_isolation import ExecIsolationContract
from moorage.core.testing.exec_process import ExecProcessContract
from moorage.core.testing.exec_streams import ExecStreamsContract


class ExecDriverContract(ExecProcessContract, ExecIsolationContract, ExecStreamsContract):
    """The exec contract, against ``moorage_driver``: every part."""
