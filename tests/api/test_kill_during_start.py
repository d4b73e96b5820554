"""A daemon SIGKILLed at a chosen step of a container's start (the kill -9 soak, bench/soak.py,
hits these windows only at random): after the restart the container is either fully started
(its command runs, under the restarted daemon, with its network) or left no trace (no process,
mount, cgroup, veth or monitor), and the daemon can start and stop it again.

A test-only plugin (a third-party distribution on ``PYTHONPATH``, as tests/hook_recorder.py
is; the daemon has no code path of its own for it) holds the start at a step, on a network
driver that is the bridge driver with a join that can wait before and after its own, or a
graph driver that is the overlay driver with a ``get`` that can wait after its own:

- ``mounted`` (the graph driver): the rootfs is mounted, and nothing is saved yet: the state
  does not say running, no process exists. No hook or network step is called in this window.
  The restarted daemon must hand the mount back (the soak's first find,
  core/services/container_restore.py, ``_release_rootfs_of_interrupted_start``); the test fails without that;

- ``before-join``: the rootfs is mounted, the state saved as running without a pid, and the
  exec driver has made the container's namespaces and waits for the join before it runs the
  command;
- ``after-join``: the same, with the veth made, the address and published port taken and the
  endpoint saved;
- ``started`` (the started lifecycle hook): the command runs, but the start is not answered
  and the core's monitor of the run does not exist yet. Without a published port the start
  saves nothing after the join: the endpoint saved in the join is all a restarted daemon has.
  That case fails without that save (core/services/container_start.py, ``NamespaceJoin``): the
  container comes back running without its address, the bug the 200-kill soak found at kill
  78 (docs/reliability.md).

Seen on this machine: at ``before-join`` and ``after-join`` the command never ran, and the
restarted daemon records an exit (-127) leaving no trace; at ``started`` the container runs on
under the restarted daemon with its network. Either outcome passes, checked in full.

The plugin holds one start only (the test arms it with a file naming the step) and lets it go
when the test writes ``release`` (or after a minute), so that a failing test cannot leave a
daemon stuck.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from conftest import Daemon, exec_driver_unsupported, import_image, make_distribution, unmount_below
from network.conftest import free_test_subnet, remove_bridge_and_table
from network.test_daemon import SERVE

from moorage.core.sdk.mounts import mounts_below
from moorage.core.testing.network import host_links, quiet_host_port, settle
from moorage.drivers.network.bridge import host_veth_name

pytestmark = [
    pytest.mark.skipif(exec_driver_unsupported("native") is not None, reason="the daemons here use the native driver"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="the bridge driver needs nft"),
]

#: the bridge driver, with steps of a start that wait while armed (``<root>/hold`` names the
#: step) until ``<root>/release`` exists, having written ``<root>/held`` (the id and pid) first
HOLDING = '''
import os, time
from moorage.core.sdk.hookspecs import hookimpl
from moorage.drivers.graph.overlay import OverlayDriver
from moorage.drivers.network.bridge import BridgeDriver

_root = None  # the daemon's root, once configured (before the API listens, after the restore)


def wait_in_step(root, step, container_id, pid):
    hold = os.path.join(root, "hold")
    try:
        with open(hold) as f:
            if f.read().strip() != step:
                return
    except FileNotFoundError:
        return
    os.unlink(hold)
    with open(os.path.join(root, "held.tmp"), "w") as f:
        f.write(f"{container_id} {pid}")
    os.rename(os.path.join(root, "held.tmp"), os.path.join(root, "held"))
    deadline = time.monotonic() + 60
    while not os.path.exists(os.path.join(root, "release")) and time.monotonic() < deadline:
        time.sleep(0.05)


class HoldingBridge(BridgeDriver):
    name = "holdingbridge"

    def join(self, container_id, pid, ports, hostname=""):
        root = self.home.parent.parent  # <root>/network/holdingbridge
        wait_in_step(root, "before-join", container_id, pid)
        endpoint = super().join(container_id, pid, ports, hostname)
        wait_in_step(root, "after-join", container_id, pid)
        return endpoint


class HoldingOverlay(OverlayDriver):
    name = "holdingoverlay"

    def get(self, id):
        path = super().get(id)
        wait_in_step(self.home.parent.parent, "mounted", id, 0)  # <root>/graph/holdingoverlay
        return path


@hookimpl
def moorage_network_register():
    return [HoldingBridge]


@hookimpl
def moorage_graph_register():
    return [HoldingOverlay]


@hookimpl
def moorage_daemon_configured(config):
    global _root
    _root = str(config["daemon"]["root"])


@hookimpl
def moorage_container_started(container_id, pid):
    wait_in_step(_root, "started", container_id, pid)
'''


def held(directory: Path, timeout: float = 60) -> tuple[str, int]:
    """The full id and pid the plugin wrote once it holds a start."""
    path = directory / "held"
    assert settle(path.exists, timeout), "the start did not reach the held step"
    container_id, pid = path.read_text().split()
    return container_id, int(pid)


def start_in_thread(daemon: Daemon, cid: str, body: dict | None = None) -> threading.Thread:
    """``POST /containers/{cid}/start`` from a thread: held, it is answered only by the kill."""
    def start() -> None:
        with contextlib.suppress(httpx.TransportError), daemon.client(timeout=120) as api:
            api.post(f"/containers/{cid}/start", json=body)

    thread = threading.Thread(target=start, daemon=True)
    thread.start()
    return thread


def monitor_holders(root: Path, container_id: str) -> list[int]:
    """Processes (not the daemon) with a file of the container's directory open: its monitor."""
    prefix = str(root / "containers" / container_id) + "/"
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:
            continue  # gone, or not ours to read
    return found


def traces(daemon: Daemon, container_id: str, pid: int) -> list[str]:
    """What is left of a container that does not run (empty: nothing)."""
    left = [f"mount {point}" for point in mounts_below(daemon.root) if container_id in point]
    left += [f"cgroup {group}" for group in Path("/sys/fs/cgroup").glob(f"*/moorage/{container_id}")]
    left += [f"monitor process {p}" for p in monitor_holders(daemon.root, container_id) if p != daemon.proc.pid]
    left += [f"process {pid}"] if pid and Path(f"/proc/{pid}").exists() else []
    return left


def no_traces(daemon: Daemon, container_id: str, pid: int) -> list[str]:
    """``traces`` once the background teardown (unmounts, monitors) had time to end."""
    settle(lambda: not traces(daemon, container_id, pid), 20)
    return traces(daemon, container_id, pid)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


@contextlib.contextmanager
def holding_daemon(base: Path, daemon_config: str):
    """A daemon below ``base`` with the holding plugin installed; at the end the held step is
    let go, and the daemon (restarted if it was killed: containers outlive it) removes its
    containers."""
    site = base / "site"
    site.mkdir()
    make_distribution(site, "moorage-holding", {"holding": HOLDING}, {"holding": "holding"})
    (base / "daemon").mkdir()
    # -r=false (as bench/soak.py): a container found stopped at the restart stays stopped
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    daemon = Daemon(base / "daemon", daemon_config, flags=["-r=false"], env={"PYTHONPATH": path})
    try:
        yield daemon
    finally:
        daemon.root.mkdir(parents=True, exist_ok=True)
        (daemon.root / "release").touch()
        if daemon.proc is not None and daemon.proc.poll() is not None:
            with contextlib.suppress(RuntimeError):
                daemon.start()
        daemon.remove_all_containers()
        daemon.stop()
        unmount_below(daemon.base)
        shutil.rmtree(daemon.base, ignore_errors=True)


def config(bridge: str, table: str) -> str:
    return (f'[graph]\ndriver = "overlay"\n[exec]\ndriver = "native"\n[network]\ndriver = "holdingbridge"\n'
            f'[network.holdingbridge]\nname = "{bridge}"\ntable = "{table}"\nbip = "{free_test_subnet()}"\n')


@pytest.mark.parametrize(("step", "published"), [("before-join", True), ("after-join", True), ("started", True),
                                                  ("started", False)])
def test_a_start_killed_at_a_step_runs_fully_or_leaves_no_trace(tmp_path_factory, busybox_tar, step, published):
    suffix = uuid.uuid4().hex[:8]
    bridge, table = f"mtst{suffix}", f"moorage-test-{suffix}"
    base = tmp_path_factory.mktemp(f"killstart-{suffix}")
    try:
        with holding_daemon(base, config(bridge, table)) as daemon:
            root = daemon.root
            daemon.start()
            import_image(daemon, busybox_tar)
            with daemon.client() as api:
                cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": SERVE,
                                                           "ExposedPorts": {"80/tcp": {}}}).json()["Id"]
            # without a published port the start saves no state after the join (the endpoint is
            # saved in the join itself)
            binding = ({"PortBindings": {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(quiet_host_port())}]}}
                       if published else None)
            (root / "hold").write_text(step)
            start_in_thread(daemon, cid, binding)
            container_id, pid = held(root)
            assert container_id.startswith(cid) and pid > 0
            veth = host_veth_name(bridge, container_id)
            assert (veth in host_links()) == (step != "before-join")
            daemon.kill()
            daemon.start()

            with daemon.client() as api:
                if api.get(f"/containers/{cid}/json").json()["State"]["Running"]:
                    assert_runs_with_its_network(api, cid, veth, binding)
                else:  # no trace; and it starts again, with the same port
                    assert no_traces(daemon, container_id, pid) == [], daemon.log()[-3000:]
                    assert settle(lambda: veth not in host_links()), "its veth is left"
                    answer = api.post(f"/containers/{cid}/start", json=binding)
                    assert answer.status_code == 204, answer.text
                    assert_runs_with_its_network(api, cid, veth, binding)
                running = api.get(f"/containers/{cid}/json").json()["State"]["Pid"]
                assert api.post(f"/containers/{cid}/stop", params={"t": 1}).status_code == 204
                assert no_traces(daemon, container_id, running) == [], daemon.log()[-3000:]
                assert no_traces(daemon, container_id, pid) == [], daemon.log()[-3000:]
                assert settle(lambda: veth not in host_links()), "its veth is left after the stop"
                assert api.delete(f"/containers/{cid}").status_code == 204
            assert "Traceback" not in daemon.log(), daemon.log()[-6000:]
    finally:
        remove_bridge_and_table(bridge, table)


def test_a_start_killed_after_its_rootfs_was_mounted_leaves_no_mount(tmp_path_factory, busybox_tar):
    base = tmp_path_factory.mktemp(f"killmount-{uuid.uuid4().hex[:8]}")
    daemon_config = '[graph]\ndriver = "holdingoverlay"\n[exec]\ndriver = "native"\n[network]\ndriver = "none"\n'
    with holding_daemon(base, daemon_config) as daemon:
        root = daemon.root
        daemon.start()
        import_image(daemon, busybox_tar)
        with daemon.client() as api:
            cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["sleep", "60"]}).json()["Id"]
        (root / "hold").write_text("mounted")
        start_in_thread(daemon, cid)
        container_id, _ = held(root)
        assert container_id.startswith(cid)
        assert [p for p in mounts_below(daemon.root) if container_id in p], "held with its rootfs mounted"
        daemon.kill()
        daemon.start()
        with daemon.client() as api:
            assert not api.get(f"/containers/{cid}/json").json()["State"]["Running"]
            assert no_traces(daemon, container_id, 0) == [], daemon.log()[-3000:]
            assert api.post(f"/containers/{cid}/start").status_code == 204
            data = api.get(f"/containers/{cid}/json").json()
            assert data["State"]["Running"] and "sleep" in cmdline(data["State"]["Pid"])
            assert api.post(f"/containers/{cid}/stop", params={"t": 1}).status_code == 204
            assert no_traces(daemon, container_id, data["State"]["Pid"]) == [], daemon.log()[-3000:]
            assert api.delete(f"/containers/{cid}").status_code == 204
        assert "Traceback" not in daemon.log(), daemon.log()[-6000:]


def assert_runs_with_its_network(api: httpx.Client, cid: str, veth: str, binding: dict | None) -> None:
    """Its command runs, with its veth and an address that answers, and its published port
    (if it has one), which answers too."""
    data = api.get(f"/containers/{cid}/json").json()
    assert data["State"]["Running"] and "httpd" in cmdline(data["State"]["Pid"]), data["State"]
    settings = data["NetworkSettings"] or {}
    assert settings.get("IPAddress"), settings
    assert veth in host_links()
    page = f"hello-from-{data['Config']['Hostname']}"
    assert answered(f"http://{settings['IPAddress']}/index.html") == page
    if binding is not None:
        assert (settings.get("Ports") or {}).get("80/tcp") == binding["PortBindings"]["80/tcp"], settings
        assert answered(f"http://127.0.0.1:{binding['PortBindings']['80/tcp'][0]['HostPort']}/index.html") == page


def answered(url: str, timeout: float = 30) -> str:
    """The page the container's httpd serves at ``url`` (it may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=10).text.strip()
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
