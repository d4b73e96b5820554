"""Shared fixtures: a real daemon process on a real unix socket and TCP port, and clean-up."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import leftovers
import pytest

from moorage.api.cli.harness import MOORAGE, DaemonProcess, free_port, progress_objects  # noqa: F401
from moorage.core.sdk.mounts import unmount_below  # noqa: F401  (the tests import it from here)


class Daemon(DaemonProcess):
    """A test's ``moorage daemon`` (``moorage.api.cli.harness``), listening on a TCP port too."""

    # the test VM (tests/vm, qemu TCG) starts a daemon in minutes, not seconds: it sets more
    ready_timeout = float(os.environ.get("MOORAGE_TEST_DAEMON_READY", "30"))


NETWORK_DRIVER = '''
from moorage.core.sdk.errors import DriverError, NotSupported
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.network import Endpoint, NetworkDriver


class {cls}(NetworkDriver):
    """A third-party network driver made by a test."""
    name = "{name}"
    priority = {priority}
    isolates = True
    configures = {configures}

    def __init__(self, context):
        super().__init__(context)
        {init}

    def join(self, container_id, pid, ports, hostname=""):
        {join}

    def leave(self, container_id):
        pass

    def release(self, container_id):
        pass

    def restore(self, container_id, endpoint):
        pass

    def status(self):
        return [["Plugin", "{name}"]]

    def cleanup(self):
        pass


@hookimpl
def moorage_network_register():
    return [{cls}]
'''


def network_module(cls: str, name: str, priority: int = 50, init: str = "pass", join: str = "return Endpoint()",
                   configures: bool = True) -> str:
    """The source of a plugin module registering network driver ``cls`` (loopback only, unless
    ``join`` says otherwise), for ``make_distribution``."""
    return NETWORK_DRIVER.format(cls=cls, name=name, priority=priority, init=init, join=join, configures=configures)


def eventually(check, what: str = "the condition", timeout: float = 30):
    """``check()``'s value once it is truthy (polled, as ``settle``); fails naming ``what`` at
    the deadline."""
    from moorage.core.testing.network import settle

    value = settle(check, timeout)
    assert value, f"timed out after {timeout} s waiting for {what}"
    return value


def make_distribution(site: Path, dist: str, modules: dict[str, str], entry_points: dict[str, str]) -> None:
    """Install ``dist`` into ``site`` the way pip lays it out: modules plus a dist-info."""
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[moorage]\n{lines}\n")


@contextlib.contextmanager
def loop_filesystem(base: Path, size: str, mkfs: list[str], fstype: str):
    """A filesystem of ``size`` made by ``mkfs`` (argv, the image path appended) on a loop
    device, mounted at ``base/mnt``; unmounted, detached and deleted at the end, pass or fail."""
    image, mountpoint = base / f"fs-{uuid.uuid4().hex[:8]}.img", base / "mnt"
    mountpoint.mkdir()
    subprocess.run(["truncate", "-s", size, str(image)], check=True)
    subprocess.run([*mkfs, str(image)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        subprocess.run(["mount", "-t", fstype, loop, str(mountpoint)], check=True)
        try:
            yield mountpoint
        finally:
            if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)
    finally:
        subprocess.run(["losetup", "-d", loop], capture_output=True)
        image.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def btrfs_mount(tmp_path_factory):
    """A 512 MB btrfs filesystem on a loop device, unmounted and detached at the end."""
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("mkfs.btrfs is needed (Debian package btrfs-progs)")
    with loop_filesystem(tmp_path_factory.mktemp("btrfs"), "512M", ["mkfs.btrfs", "-q"], "btrfs") as mountpoint:
        yield mountpoint


@pytest.fixture
def daemon_factory(tmp_path_factory):
    """``daemon_factory(config="", flags=[...], start=True, env={})`` -> a started ``Daemon``.

    Every daemon is stopped, and everything mounted below its directory is unmounted, when
    the test ends, pass or fail. Tests that make cgroups, namespaces, bridges or nft tables
    add their own finalizers through the driver fixtures of their family.
    """
    made: list[Daemon] = []

    def make(config: str = "", flags: list[str] | None = None, start: bool = True,
             env: dict[str, str] | None = None) -> Daemon:
        base = tmp_path_factory.mktemp(f"daemon-{uuid.uuid4().hex[:6]}")
        d = Daemon(base, config, flags, env)
        made.append(d)
        if start:
            d.start()
        return d

    yield make
    # newest first: a test that restarts a daemon on the first one's root (``-g first.root``)
    # leaves the first one dead; its directory, that root included, must stay until the live
    # daemon has removed the containers (else their cgroups outlive them: run 3's leak)
    for d in reversed(made):
        d.dispose()



@pytest.fixture
def registry(tmp_path):
    """A real registry (Debian's ``docker-registry``) on loopback, stopped at the test's end."""
    from moorage.core.testing.registry.servers import RegistryServer

    server = RegistryServer(tmp_path / "registry")
    yield server
    server.stop()

@pytest.fixture
def daemon(daemon_factory) -> Daemon:
    """A daemon with the default drivers and an empty config file."""
    return daemon_factory()


#: Fixtures that need root: a daemon (it mounts, makes namespaces and cgroups), a driver on the
#: host's kernel, a loop device. A test using one, or marked ``@pytest.mark.root``, needs root;
#: the others (unit tests, the docs meta-tests) run unprivileged too.
ROOT_FIXTURES = frozenset({
    "daemon", "daemon_factory", "busybox_daemon", "docker_py_client", "exec_driver", "btrfs_mount",
    "btrfs_home", "graph_driver", "store", "bridge_env", "bridge_factory", "free_test_subnet", "busybox_rootfs",
    "shared_daemon", "hooked", "refusing_daemon", "network_driver", "container", "driver", "target",
})


def pytest_configure(config):
    config.addinivalue_line("markers", "root: the test needs root (the kernel: mounts, namespaces, cgroups)")
    worker = hasattr(config, "workerinput")  # an xdist worker: its controller checks the host
    token, nested = leftovers.session_token(worker)
    if not worker:
        config.stash[LEAK_CHECK] = leftovers.LeakCheck(token, leftovers.check_mode(nested))
        config.stash[WORKER_PIDS] = set()
    else:
        config.workeroutput["pid"] = os.getpid()


# -- what the run leaves on the host (tests/leftovers.py) -------------------------------------
LEAK_CHECK = pytest.StashKey[leftovers.LeakCheck]()
WORKER_PIDS = pytest.StashKey[set]()
LEFT_BEHIND = pytest.StashKey[list]()


def pytest_sessionstart(session):
    if LEAK_CHECK in session.config.stash:
        session.config.stash[LEAK_CHECK].start()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """xdist: a worker is done (its fixtures torn down); it is pytest, not a leftover."""
    pid = getattr(node, "workeroutput", {}).get("pid")
    if pid:
        node.config.stash[WORKER_PIDS].add(pid)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run if it left moorage processes, mounts, loop devices, cgroups, links,
    network namespaces or nft tables behind (see tests/leftovers.py for what counts as its own)."""
    if LEAK_CHECK not in session.config.stash or exitstatus == pytest.ExitCode.INTERRUPTED:
        return
    exclude = {os.getpid(), *session.config.stash[WORKER_PIDS]}
    # every daemon root, btrfs image and test filesystem is below it (xdist workers' too)
    basetemp = session.config._tmp_path_factory.getbasetemp()
    found = session.config.stash[LEAK_CHECK].leftovers(basetemp, exclude)
    session.config.stash[LEFT_BEHIND] = found
    if found and session.exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    found = config.stash.get(LEFT_BEHIND, [])
    if found:
        mode = config.stash[LEAK_CHECK].mode
        terminalreporter.section(f"LEFT BEHIND by this test run ({len(found)}; {leftovers.MODE_VARIABLE}={mode})",
                                 sep="!", red=True, bold=True)
        for line in found:
            terminalreporter.line(line, red=True)
        terminalreporter.line("The run fails: find the test whose cleanup misses these (tests/leftovers.py).",
                              red=True, bold=True)


def needs_root(item) -> bool:
    return item.get_closest_marker("root") is not None or not ROOT_FIXTURES.isdisjoint(item.fixturenames)


def pytest_collection_modifyitems(config, items):
    if hasattr(config, "workerinput"):  # an xdist worker: the slow groups first (xdist_schedule)
        items.sort(key=lambda item: group_rank(xdist_group(item.nodeid)))  # stable: in-group order kept
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (real mounts, namespaces, cgroups)")
    for item in items:
        if needs_root(item):
            item.add_marker(skip)


# -- running the suite on several xdist workers (`pytest -n 3`, README) -----------------------
#: Every test that runs an LXC container is in one group, on one worker: LXC's monitor moves
#: itself into the host-wide ``lxc.pivot`` cgroup as it exits, and the lxc tests assert that
#: no ``lxc.pivot`` is left after their own containers.
LXC_GROUP = "lxc"
#: The modules that make network links on the host or assert that none appeared meanwhile (the
#: network contract compares the host's links before and after): one group, on one worker.
#: Their ``[lxc]`` halves are here too (a link appearing fails a contract test every time; a
#: concurrent lxc container exiting is a narrower window for the lxc group's pivot checks).
HOST_NETWORK_GROUP = "host-network"
HOST_NETWORK_MODULES = ("tests/network/", "tests/examples/test_macvlan.py", "tests/cli/test_ports.py",
                        "tests/bench/test_bench_command.py", "tests/core/test_inventory.py", "tests/test_leftovers.py")
#: The groups that take longest, handed out first so that none of them starts last (a free
#: worker takes the next group in collection order; pyproject.toml turns xdist's own ordering
#: by size off). Measured: docs/testing.md.
SLOW_GROUPS = (LXC_GROUP, "tests/vm/test_vm.py", HOST_NETWORK_GROUP, "tests/api/test_fuzz.py", "tests/api/test_soak.py",
               "tests/contract/test_by_name.py", "tests/images/test_hostile_endpoints.py")


def xdist_group(nodeid: str) -> str:
    """The group of the test ``nodeid`` (one worker runs a whole group, in order):
    ``HOST_NETWORK_GROUP``, ``LXC_GROUP``, else its module, so that module-scoped fixtures (a
    module's daemon) are set up once."""
    module = nodeid.split("::")[0]
    if module.startswith(HOST_NETWORK_MODULES):
        return HOST_NETWORK_GROUP
    return LXC_GROUP if "lxc" in nodeid.lower() else module


def group_rank(group: str) -> int:
    return SLOW_GROUPS.index(group) if group in SLOW_GROUPS else len(SLOW_GROUPS)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """xdist's scheduling by scope, with ``xdist_group`` as the scope. (xdist's own
    ``--dist loadgroup`` marks nodeids in a way pytest 9 no longer sees.)"""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group(nodeid)

    return GroupScheduling(config, log)


def import_image(daemon: Daemon, tar_path: Path, repo: str = "busybox") -> str:
    """Import a tar through the API; returns the new image's short id."""
    return daemon.import_image(tar_path, repo)


#: The JSON objects of a v1.6 progress stream.
stream_objects = progress_objects


def auth_header(username: str = "", password: str = "") -> dict[str, str]:
    """An ``X-Registry-Auth`` header with these credentials."""
    import base64
    import json as _json

    blob = _json.dumps({"username": username, "password": password, "email": "", "serveraddress": ""})
    return {"X-Registry-Auth": base64.urlsafe_b64encode(blob.encode()).decode()}


#: A daemon config for container tests: no networking, so they need no bridge.
CONTAINER_CONFIG = '[graph]\ndriver = "{graph}"\n[exec]\ndriver = "{exec}"\n[network]\ndriver = "none"\n'


def import_docker_py():
    """docker-py 0.2.3, the client release that speaks API 1.6, or skip. It predates Python 3.10,
    which removed the ``collections`` aliases of the ABCs its bundled urllib3 uses: they are put
    back first (in the client's world only; moorage never uses them)."""
    import collections
    import collections.abc

    for name in ("Mapping", "MutableMapping", "Callable", "Iterable", "Sequence", "MutableSet", "Set"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))
    docker = pytest.importorskip("docker", reason="docker-py 0.2.3 is installed by `bash bootstrap test`")
    if getattr(docker, "__version__", None) not in (None, "0.2.3") or not hasattr(docker, "Client"):
        pytest.skip("the installed `docker` module is not docker-py 0.2.3", allow_module_level=True)
    return docker


@pytest.fixture
def make(api):
    """``make(cmd, name=None, **config)`` creates a busybox container through the module's ``api``
    client (a fixture each API test module defines for its daemon); all are removed at the end."""
    made = []

    def create(cmd, name=None, **config):
        response = api.post("/containers/create", json={"Image": "busybox", "Cmd": cmd, **config},
                            params={"name": name} if name else None)
        assert response.status_code == 201, response.text
        made.append(response.json()["Id"])
        return response.json()["Id"]

    yield create
    for cid in made:
        api.post(f"/containers/{cid}/kill")
        api.delete(f"/containers/{cid}")


def frames(data: bytes) -> list[tuple[int, bytes]]:
    """The frames of a multiplexed stream (attach, logs, exec without a tty): an 8-byte header
    (stream 0/1/2, three zero bytes, the big-endian length) before each payload."""
    out = []
    while data:
        kind, size = data[0], int.from_bytes(data[4:8], "big")
        assert len(data) >= 8 + size and data[1:4] == b"\0\0\0", data[:64]
        out.append((kind, data[8:8 + size]))
        data = data[8 + size:]
    return out


def payloads(data: bytes, streams: tuple[int, ...] = (1, 2)) -> bytes:
    """The payloads of a multiplexed stream's frames of ``streams`` (1 stdout, 2 stderr), joined."""
    return b"".join(payload for kind, payload in frames(data) if kind in streams)


def make_tar(files: dict[str, bytes | str | None]) -> bytes:
    """A layer tar: ``bytes`` a file, ``None`` a directory, ``str`` a symlink target."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.mtime = int(time.time())
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


@contextlib.contextmanager
def tracked_docker_py(daemon: Daemon):
    """A docker-py 0.2.3 client of ``daemon``; the containers it created are killed and removed
    at the end, whatever the test did."""
    docker = import_docker_py()
    client = docker.Client(base_url=f"unix://{daemon.sock}", version="1.6", timeout=120)
    made: list[str] = []
    create = client.create_container

    def tracking(*args, **kwargs):
        result = create(*args, **kwargs)
        made.append(result["Id"])
        return result

    client.create_container = tracking
    try:
        yield client
    finally:
        for cid in made:
            try:
                client.kill(cid)
                client.remove_container(cid)
            except Exception:
                pass


@pytest.fixture
def docker_py_client(busybox_daemon):
    """A docker-py 0.2.3 client of the module's daemon (``tracked_docker_py``)."""
    with tracked_docker_py(busybox_daemon) as client:
        yield client


def exec_driver_unsupported(name: str) -> str | None:
    """Why exec driver ``name`` cannot run here, or None: its own probe says."""
    from moorage.core.kernel.plugins import PluginManager
    from moorage.core.sdk.driver import DriverContext
    from moorage.core.sdk.errors import NotSupported

    pm = PluginManager()
    pm.load_entry_points()
    pm.collect_drivers()
    try:
        driver = pm.families["exec"].get(name)
        driver(DriverContext.standalone(driver, Path("/nonexistent")))
    except NotSupported as exc:
        return str(exc)
    except Exception:
        return None
    return None


#: The exec drivers the API-level tests run against, each through the same tests.
EXEC_DRIVERS = ("native", "lxc")


@pytest.fixture(scope="module", params=EXEC_DRIVERS)
def exec_driver(request) -> str:
    """The exec driver of this module's daemons: API tests run once per exec driver."""
    reason = exec_driver_unsupported(request.param)
    if reason:
        pytest.skip(f"exec driver {request.param}: {reason}")
    return request.param


@contextlib.contextmanager
def busybox_daemon_in(base: Path, busybox_tar: Path, config: str, flags: list[str] | None = None):
    """A started daemon in ``base`` with busybox imported; stopped and cleaned up at the end."""
    with Daemon(base, config, flags).start() as d:
        d.image_id = import_image(d, busybox_tar)
        yield d


@pytest.fixture(scope="module")
def busybox_daemon(tmp_path_factory, busybox_tar, exec_driver):
    """A daemon shared by a test module, with the busybox image imported as ``busybox``."""
    base = tmp_path_factory.mktemp(f"bbd-{exec_driver}-{uuid.uuid4().hex[:6]}")
    with busybox_daemon_in(base, busybox_tar, CONTAINER_CONFIG.format(graph="overlay", exec=exec_driver)) as d:
        yield d
