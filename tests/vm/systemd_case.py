"""The shipped systemd units (api/systemd/) under a real systemd: run only inside the test VM
booted with systemd as pid 1 (``harness.run(..., systemd=True)``, the host's own systemd:
Debian 12's 252), by ``tests/vm/test_systemd_vm.py`` and ``tests/vm/run.py --all``.

Not named ``test_*.py``: on the host (whose pid 1 is not systemd) the suite does not collect it;
the VM's pytest is given its path. It installs the units as the README says, with a drop-in that
points the daemon at a config and a root of the test's own, then: ``systemctl start
moorage.socket``; the first request starts ``moorage.service``; a container runs in the
delegated subtree; ``systemctl restart moorage`` keeps it running (``KillMode=process``) and the
new daemon restores it.
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
    unit = CGROUP_ROOT / "system.slice" / "moorage.service"
    for path in sorted(unit.rglob("cgroup.procs")) if unit.is_dir() else []:
        procs = path.read_text().split()
        subtree = (path.parent / "cgroup.subtree_control").read_text().strip()
        tree.append(f"{path.parent}: procs {procs} subtree_control [{subtree}]")
    logs = subprocess.run(["journalctl", "--no-pager", "-n", "60", "-u", "moorage.service", "-u", "moorage.socket"],
                          capture_output=True, text=True)
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
    except FileNotFoundError:
        return False


@pytest.fixture
def installed(tmp_path_factory):
    """The units installed as the README says, the daemon given a config and root of its own."""
    base = tmp_path_factory.mktemp("systemd")
    config = base / "config.toml"
    config.write_text(CONTAINER_CONFIG.format(graph="overlay", exec="native"))
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
    yield base
    systemctl("stop", "moorage.socket", "moorage.service", check=False)
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
    systemctl("start", "moorage.socket")
    assert show("moorage.service", "ActiveState") == "inactive"  # nothing started it yet
    ping()  # this request starts the service
    wait_active("moorage.service")
    daemon = int(show("moorage.service", "MainPID"))
    unit_cgroup = show("moorage.service", "ControlGroup")
    assert unit_cgroup == "/system.slice/moorage.service"
    # systemd 252 does not know DelegateSubgroup=: the daemon moved itself into the same leaf
    assert cgroup_of(daemon) == f"{unit_cgroup}/moorage.daemon"

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
    # in the delegated subtree (create answers the short id, as Docker 0.6 did)
    assert container_cgroup.parent == CGROUP_ROOT / unit_cgroup.lstrip("/") / "moorage"
    assert container_cgroup.name.startswith(cid)
    assert int((container_cgroup / "memory.max").read_text()) == 64 << 20

    restart = systemctl("restart", "moorage.service", check=False)
    assert alive(pid), "systemctl restart moorage killed the container (KillMode=process must keep it)"
    if restart.returncode != 0 and systemd_version() < 254:
        known_limit_of_old_systemd(cid, pid)
    assert restart.returncode == 0, f"the restart failed with a container running:\n{journal()}"
    wait_active("moorage.service")
    assert int(show("moorage.service", "MainPID")) != daemon
    with api() as client:
        state = client.get(f"/containers/{cid}/json").json()["State"]
        assert state["Running"] is True and state["Pid"] == pid  # restored, not restarted
        assert client.post(f"/containers/{cid}/kill").status_code == 204
        assert client.post(f"/containers/{cid}/wait").json()["StatusCode"] == 137
        assert client.delete(f"/containers/{cid}").status_code == 204
    assert not container_cgroup.exists()
    assert not alive(pid)


def systemd_version() -> int:
    return int(systemctl("--version").stdout.split()[1])


def known_limit_of_old_systemd(cid: str, pid: int) -> None:
    """systemd before 254 puts the new daemon into the unit's own cgroup, which the kernel
    refuses while containers run below it (no internal processes): the start fails with
    219/CGROUP (docs/exec-drivers.md). Check that this is what happened, that the documented way
    out works (end the containers, start the service: the container is found exited), and mark
    the restart as the known failure it is."""
    for _ in range(60):  # Restart=on-failure tries again until the start limit
        if show("moorage.service", "ActiveState") in ("failed", "inactive"):
            break
        time.sleep(1)
    assert show("moorage.service", "ExecMainStatus") == "219", journal()
    assert alive(pid), "the container died with the failed start"
    os.kill(pid, 9)
    deadline = time.monotonic() + 60
    while alive(pid):
        assert time.monotonic() < deadline, "the container does not die"
        time.sleep(0.2)
    systemctl("reset-failed", "moorage.service", check=False)
    systemctl("start", "moorage.service")
    wait_active("moorage.service")
    with api() as client:
        state = client.get(f"/containers/{cid}/json").json()["State"]
        assert state["Running"] is False and state["ExitCode"] == 137, state
        assert client.delete(f"/containers/{cid}").status_code == 204
    pytest.xfail(f"systemd {systemd_version()} (< 254) cannot restart moorage.service while a container runs: "
                 "219/CGROUP, as docs/exec-drivers.md says; containers survive, the API is back once they end")
