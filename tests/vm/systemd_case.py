"""The shipped systemd units (api/systemd/) under a real systemd: run only inside the test VM
booted with systemd as pid 1 (``harness.run(..., systemd=True)``, the host's own systemd:
Debian 12's 252), by ``tests/vm/run.py --systemd`` and ``--all``.

Not named ``test_*.py``: on the host (whose pid 1 is not systemd) the suite does not collect it;
the VM's pytest is given its path. It installs the units as the README says, with a drop-in that
points the daemon at a config and a root of the test's own, then: ``systemctl start
moorage.socket``; the first request starts ``moorage.service``; a container runs in the
delegated subtree (under systemd < 254, in the transient scope the native driver makes through
D-Bus, ``moorage-containers.scope``); ``systemctl restart moorage`` succeeds and keeps it running
(``KillMode=process``), the new daemon restores it, kills and removes it, and once the service
stops no cgroup of it is left. Three cases (``CASES``): the native driver with no system bus
(dbus masked: the scope is made through systemd's private socket), the lxc driver (its
containers' cgroups are LXC's, ``/lxc.payload.<id>``), the native driver with the bus.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import CONTAINER_CONFIG

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "api" / "systemd"
SYSTEM = Path("/etc/systemd/system")
SOCKET = "/run/moorage.sock"
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: where the native driver puts the containers of moorage.service under systemd < 254
SCOPE = "moorage-containers.scope"
SYSTEM_BUS = Path("/run/dbus/system_bus_socket")
#: (exec driver, whether the system bus runs): without a bus, the native driver makes its scope
#: through systemd's private socket; the lxc driver needs no scope (LXC's cgroups are at the top)
CASES = [("native", False), ("lxc", True), ("native", True)]

pytestmark = pytest.mark.skipif(not Path("/run/systemd/system").is_dir() or os.environ.get("MOORAGE_VM") != "1",
                                reason="only in the test VM booted with systemd as pid 1 (tests/vm)")


def systemctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, f"systemctl {' '.join(args)}: {done.stdout}{done.stderr}\n{journal()}"
    return done


def journal() -> str:
    """What systemd says of the service, and the unit's cgroup tree (for failure messages)."""
    done = subprocess.run(["systemctl", "status", "--no-pager", "-l", "-n", "30", "moorage.service"],
                          capture_output=True, text=True)
    tree = []
    units = [CGROUP_ROOT / "system.slice" / "moorage.service", CGROUP_ROOT / "system.slice" / SCOPE,
             *CGROUP_ROOT.glob("lxc.*")]
    for unit in units:
        for path in sorted(unit.rglob("cgroup.procs")) if unit.is_dir() else []:
            procs = path.read_text().split()
            subtree = (path.parent / "cgroup.subtree_control").read_text().strip()
            tree.append(f"{path.parent}: procs {procs} subtree_control [{subtree}]")
    logs = subprocess.run(["journalctl", "--no-pager", "-n", "60", "-u", "moorage.service", "-u", "moorage.socket",
                           "-u", SCOPE], capture_output=True, text=True)
    return done.stdout + done.stderr + logs.stdout + "\n".join(tree)


def ping() -> None:
    """The first request (it starts the service: the daemon's start takes a while under TCG)."""
    try:
        with api(timeout=600) as client:
            assert client.get("/_ping").text == "OK"
    except httpx.HTTPError as exc:
        raise AssertionError(f"no answer on {SOCKET}: {exc!r}\n{journal()}") from None


def show(unit: str, prop: str) -> str:
    return systemctl("show", "-P", prop, unit).stdout.strip()


def cgroup_of(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return next(line[3:].strip() for line in f if line.startswith("0::"))


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it exited between the open and the read
        return False


@pytest.fixture(params=CASES, ids=[f"{driver}-{'bus' if bus else 'no-bus'}" for driver, bus in CASES])
def installed(request, tmp_path_factory):
    """The units installed as the README says, the daemon given a config and root of its own,
    with the case's exec driver, the system bus running or masked; yields the driver's name."""
    driver, bus = request.param
    base = tmp_path_factory.mktemp("systemd")
    config = base / "config.toml"
    config.write_text(CONTAINER_CONFIG.format(graph="overlay", exec=driver))
    link = Path("/usr/local/bin/moorage")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(REPO / ".venv" / "bin" / "moorage")
    for name in ("moorage.service", "moorage.socket"):
        shutil.copy(UNITS / name, SYSTEM / name)
    dropin = SYSTEM / "moorage.service.d"
    dropin.mkdir(exist_ok=True)
    (dropin / "test.conf").write_text(f"[Service]\nExecStart=\nExecStart=/usr/local/bin/moorage daemon "
                                      f"--config {config} -g {base / 'root'}\n")
    systemctl("daemon-reload")
    # the native driver asks systemd for its containers' scope over the system bus, else through
    # systemd's private socket; the VM's target does not pull in dbus.socket (the host tree's
    # services are not enabled): start it, or make sure no bus runs
    if bus:
        systemctl("unmask", "--runtime", "dbus.socket", "dbus.service")
        systemctl("start", "dbus.socket")
        assert SYSTEM_BUS.exists()
    else:
        systemctl("stop", "dbus.socket", "dbus.service")
        systemctl("mask", "--runtime", "dbus.socket", "dbus.service")
        SYSTEM_BUS.unlink(missing_ok=True)  # a socket file dbus.socket may leave
        assert show("dbus.service", "ActiveState") == "inactive" and not SYSTEM_BUS.exists()
    yield driver
    systemctl("stop", "moorage.socket", "moorage.service", check=False)
    systemctl("unmask", "--runtime", "dbus.socket", "dbus.service", check=False)
    for path in (SYSTEM / "moorage.service", SYSTEM / "moorage.socket"):
        path.unlink(missing_ok=True)
    shutil.rmtree(dropin, ignore_errors=True)
    systemctl("daemon-reload", check=False)


def api(timeout: float = 120) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=SOCKET), base_url="http://moorage", timeout=timeout)


def wait_active(unit: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while show(unit, "ActiveState") != "active":
        assert time.monotonic() < deadline, f"{unit} is not active: {journal()}"
        time.sleep(0.5)


def test_socket_activation_delegation_and_restart_with_a_running_container(installed, busybox_tar):
    driver = installed
    scoped = driver == "native" and systemd_version() < 254  # the native driver's scope (systemd_scope.py)
    systemctl("start", "moorage.socket")
    assert show("moorage.service", "ActiveState") == "inactive"  # nothing started it yet
    ping()  # this request starts the service
    wait_active("moorage.service")
    daemon = int(show("moorage.service", "MainPID"))
    unit_cgroup = show("moorage.service", "ControlGroup")
    assert unit_cgroup == "/system.slice/moorage.service"
    if driver == "lxc":  # LXC 5 makes its cgroups below pid 1's (less init.scope): the root
        assert cgroup_of(daemon) == unit_cgroup
        containers = "/"
    elif systemd_version() >= 254:  # DelegateSubgroup=: the daemon starts in the leaf, containers below the unit
        assert cgroup_of(daemon) == f"{unit_cgroup}/moorage.daemon"
        containers = f"{unit_cgroup}/moorage"
    else:  # the daemon stays in the unit's cgroup, which enables no controller; containers in a scope
        assert cgroup_of(daemon) == unit_cgroup
        containers = f"/system.slice/{SCOPE}/moorage"

    with api() as client, open(busybox_tar, "rb") as tar:
        response = client.post("/images/create", params={"fromSrc": "-", "repo": "busybox"}, content=tar.read())
        assert response.status_code == 200 and "error" not in response.text, response.text
        response = client.post("/containers/create", json={"Image": "busybox", "Cmd": ["sleep", "1000"],
                                                           "Memory": 64 << 20})
        assert response.status_code == 201, response.text
        cid = response.json()["Id"]
        assert client.post(f"/containers/{cid}/start", json={}).status_code == 204
        pid = client.get(f"/containers/{cid}/json").json()["State"]["Pid"]
    container_cgroup = CGROUP_ROOT / cgroup_of(pid).lstrip("/")
    # in the delegated subtree, or LXC's (create answers the short id, as Docker 0.6 did)
    assert container_cgroup.parent == CGROUP_ROOT / containers.lstrip("/"), journal()
    assert container_cgroup.name.startswith("lxc.payload." + cid if driver == "lxc" else cid), journal()
    assert int((container_cgroup / "memory.max").read_text()) == 64 << 20
    if scoped:
        assert show(SCOPE, "ActiveState") == "active" and show(SCOPE, "Delegate") == "yes", journal()
        assert show(SCOPE, "Slice") == "system.slice"
    if systemd_version() < 254:  # the unit's cgroup stays free to receive the next daemon
        assert (CGROUP_ROOT / "system.slice" / "moorage.service" / "cgroup.subtree_control").read_text().strip() == ""

    restart = systemctl("restart", "moorage.service", check=False)
    assert alive(pid), "systemctl restart moorage killed the container (KillMode=process must keep it)"
    assert restart.returncode == 0, f"the restart failed with a container running:\n{journal()}"
    wait_active("moorage.service")
    assert int(show("moorage.service", "MainPID")) != daemon
    with api() as client:
        state = client.get(f"/containers/{cid}/json").json()["State"]
        assert state["Running"] is True and state["Pid"] == pid  # restored, not restarted
        assert CGROUP_ROOT / cgroup_of(pid).lstrip("/") == container_cgroup
        assert int((container_cgroup / "memory.max").read_text()) == 64 << 20
        assert client.post(f"/containers/{cid}/kill").status_code == 204
        assert client.post(f"/containers/{cid}/wait").json()["StatusCode"] == 137
        assert client.delete(f"/containers/{cid}").status_code == 204
    assert not container_cgroup.exists()
    assert not alive(pid)
    if driver == "lxc":  # nor LXC's monitor cgroup of it
        assert not list(CGROUP_ROOT.glob(f"lxc.*.{container_cgroup.name.removeprefix('lxc.payload.')}")), journal()
    systemctl("stop", "moorage.socket", "moorage.service")
    if driver == "lxc":
        return
    # the daemon gone with no container left: nothing holds the scope, systemd removes it and its cgroups
    deadline = time.monotonic() + 120
    while (CGROUP_ROOT / containers.lstrip("/")).exists():
        assert time.monotonic() < deadline, f"{containers} is left after the last container and the daemon\n{journal()}"
        time.sleep(0.5)
    if scoped:
        assert not (CGROUP_ROOT / "system.slice" / SCOPE).exists()


def systemd_version() -> int:
    return int(systemctl("--version").stdout.split()[1])
