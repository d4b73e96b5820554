"""The pytest plugin moorage registers under ``pytest11``: the contract suites' fixtures, and
the options that run a suite against an installed driver by name::

    pytest --pyargs moorage.core.testing --moorage-driver graph=NAME [--moorage-driver-options FILE.toml]

Every family's suite uses the same three fixtures:

- ``moorage_driver``: the ``DriverUnderTest`` (family, name, and the config its options come
  from). From ``--moorage-driver`` (repeatable; a family named twice runs once per driver), or
  overridden by a driver package's own tests.
- ``driver_root``: a fresh daemon root for the test (below ``[daemon] root`` when the options
  file names one); anything mounted below it is unmounted and it is removed afterwards.
- ``driver_factory``: ``driver_factory(root=None, **settings)`` builds the driver through
  ``DriverFamily.create``; see ``moorage.core.testing.driver.DriverFactory``.

It also gives ``parent_nic``, a dummy NIC of the test's own (for drivers such as macvlan
that hang containers' links off a host interface), and the busybox image fixtures.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest

from moorage.core.kernel.config import FAMILIES
from moorage.core.sdk.errors import MoorageError
from moorage.core.sdk.mounts import unmount_below
from moorage.core.sdk.rootfs import busybox_available, make_busybox_rootfs
from moorage.core.testing.driver import DriverFactory, DriverUnderTest

#: the module ``--pyargs moorage.core.testing`` collects: one class per family's suite
BY_NAME_MODULE = "test_by_name.py"


def pytest_addoption(parser) -> None:
    group = parser.getgroup("moorage", "moorage driver contract suites")
    group.addoption("--moorage-driver", action="append", default=[], metavar="FAMILY=NAME",
                    help=f"run the contract suite of FAMILY ({', '.join(FAMILIES)}) against installed driver "
                         "NAME; repeatable")
    group.addoption("--moorage-driver-options", type=Path, metavar="FILE.toml",
                    help="a daemon config file giving the drivers' options ([FAMILY.NAME] tables, family-wide "
                         "keys, [plugins]; [daemon] root puts each test's root below it)")


def drivers_named(config) -> list[DriverUnderTest]:
    """The drivers ``--moorage-driver`` names, with the options file's options."""
    options_file = config.getoption("moorage_driver_options")
    named = []
    for value in config.getoption("moorage_driver"):
        family, sep, name = value.partition("=")
        if not sep or family not in FAMILIES or not name:
            raise pytest.UsageError(f"--moorage-driver {value!r}: expected FAMILY=NAME, FAMILY one of "
                                    f"{', '.join(FAMILIES)}")
        try:
            if options_file is not None:
                under_test = DriverUnderTest.from_file(family, name, options_file)
            else:
                under_test = DriverUnderTest.from_toml(family, name)
            family_drivers = under_test.registered()
            family_drivers.parse_options(family_drivers.get(name), under_test.section,
                                         under_test.config.driver_section_error(family, name))
        except MoorageError as exc:
            raise pytest.UsageError(f"--moorage-driver {value}: {exc.message}") from None
        named.append(under_test)
    return named


def pytest_configure(config) -> None:
    config.moorage_drivers = drivers_named(config) if config.getoption("moorage_driver") else []
    if config.moorage_drivers:
        # the suites are modules of an installed package: import them by their own names,
        # without putting the package's directory on sys.path
        config.option.importmode = "importlib"


def _suite_family(definition) -> str | None:
    cls = getattr(definition, "cls", None)
    return getattr(cls, "family", None) if cls is not None else None


def _by_name(path) -> bool:
    return Path(path).name == BY_NAME_MODULE and Path(path).parent == Path(__file__).parent


def pytest_generate_tests(metafunc) -> None:
    named = metafunc.config.moorage_drivers
    if not named or not _by_name(metafunc.definition.path) or "moorage_driver" not in metafunc.fixturenames:
        return
    family = _suite_family(metafunc.definition)
    chosen = [d for d in named if d.family == family]
    if chosen:
        metafunc.parametrize("moorage_driver", chosen, ids=[d.name for d in chosen], indirect=True,
                             scope="function")


def pytest_collection_modifyitems(session, config, items) -> None:
    by_name = [item for item in items if _by_name(item.path)]
    if not by_name:
        return
    if not config.moorage_drivers:
        raise pytest.UsageError("the contract suites run against a driver: add --moorage-driver FAMILY=NAME "
                                f"(FAMILY one of {', '.join(FAMILIES)})")
    families = {d.family for d in config.moorage_drivers}
    deselected = [item for item in by_name if _suite_family(item) not in families]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]


@pytest.fixture
def moorage_driver(request) -> DriverUnderTest:
    """The driver under test: from ``--moorage-driver``, or overridden by a driver's own tests."""
    if not hasattr(request, "param"):
        pytest.fail("no driver under test: run with --moorage-driver FAMILY=NAME or override the "
                    "moorage_driver fixture")
    return request.param


@pytest.fixture
def driver_root(moorage_driver, tmp_path) -> Path:
    """A fresh daemon root for this test, unmounted below and removed afterwards."""
    base = moorage_driver.root_base or tmp_path
    root = Path(base) / f"contract-{uuid.uuid4().hex[:10]}"
    root.mkdir(mode=0o700, parents=True)
    yield root
    unmount_below(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def driver_factory(moorage_driver, driver_root) -> DriverFactory:
    """``driver_factory(root=None, **settings)`` -> a new instance of the driver under test."""
    factory = DriverFactory(moorage_driver, driver_root)
    yield factory
    factory.finish()


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """A read-only-by-convention busybox root filesystem (a directory) shared by a session.
    Tests that write into a rootfs must copy it first."""
    if not busybox_available():
        pytest.skip("a static busybox is needed (Debian package busybox-static)")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def busybox_tar(busybox_rootfs, tmp_path_factory):
    """The busybox rootfs as an uncompressed tar file (an importable image)."""
    from moorage.core.sdk.rootfs import tar_directory

    return tar_directory(busybox_rootfs, tmp_path_factory.mktemp("busybox-tar") / "busybox.tar")


@pytest.fixture
def parent_nic():
    """A NIC of the test's own for macvlans to hang off: a dummy interface, up, without an
    address (on a kernel built without the dummy driver, one end of a veth pair); removed with
    everything on it at the end."""
    from pyroute2 import IPRoute  # imported here: most runs of this plugin make no links
    from pyroute2.netlink.exceptions import NetlinkError

    name = f"mvn{uuid.uuid4().hex[:8]}"
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="dummy")
        except NetlinkError:
            ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
            ipr.link("set", index=ipr.link_lookup(ifname=f"{name}p")[0], state="up")
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    yield name
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            ipr.link("del", index=index)
