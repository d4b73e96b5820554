"""The confinement through the API, for every exec driver: start's ``HostConfig``
``CapAdd``/``CapDrop`` and the config file's ``[security]`` table reach the container."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import CONTAINER_CONFIG, import_image, payloads

DOCKER_CAPBND = 0xA80425FB
CAP_NET_ADMIN, CAP_MKNOD, CAP_CHOWN, CAP_KILL = 12, 27, 0, 5


def run(api, cmd: list[str], host_config: dict | None = None) -> str:
    """Create, start with ``host_config``, wait and return the output of a busybox container."""
    response = api.post("/containers/create", json={"Image": "busybox", "Cmd": cmd})
    assert response.status_code == 201, response.text
    cid = response.json()["Id"]
    started = api.post(f"/containers/{cid}/start", json=host_config or {})
    assert started.status_code == 204, started.text
    assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0
    out = api.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1, "stderr": 1}).content
    api.delete(f"/containers/{cid}")
    return payloads(out).decode()


def field(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s*(\S+)$", text, re.M)
    assert match, text
    return match.group(1)


def test_cap_add_and_cap_drop_from_start(busybox_daemon):
    with busybox_daemon.client() as api:
        out = run(api, ["cat", "/proc/self/status"], {"CapAdd": ["NET_ADMIN"], "CapDrop": ["cap_mknod"]})
        assert int(field(out, "CapBnd"), 16) == (DOCKER_CAPBND | 1 << CAP_NET_ADMIN) & ~(1 << CAP_MKNOD)
        # a start without a body keeps the host config of the last one
        response = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["cat", "/proc/self/status"]})
        cid = response.json()["Id"]
        api.post(f"/containers/{cid}/start", json={"CapDrop": ["ALL"], "CapAdd": ["KILL"]})
        api.post(f"/containers/{cid}/wait")
        assert api.post(f"/containers/{cid}/start").status_code == 204
        api.post(f"/containers/{cid}/wait")
        logs = payloads(api.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1}).content).decode()
        assert re.findall(r"^CapBnd:\s*(\S+)$", logs, re.M) == ["0000000000000020"] * 2
        api.delete(f"/containers/{cid}")


def test_unknown_capability_is_a_clear_error(busybox_daemon):
    with busybox_daemon.client() as api:
        cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"]}).json()["Id"]
        response = api.post(f"/containers/{cid}/start", json={"CapAdd": ["CAP_NOPE"]})
        assert response.status_code == 400
        assert "CAP_NOPE" in response.text
        assert api.get(f"/containers/{cid}/json").json()["State"]["Running"] is False
        api.delete(f"/containers/{cid}")


@pytest.fixture
def security_daemon(daemon_factory, exec_driver, busybox_tar, tmp_path):
    """A daemon whose ``[security]`` table holds back only to CHOWN and KILL, with a profile of
    its own that refuses ``mkdir`` (EACCES) and allows the rest."""
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
    }))
    config = CONTAINER_CONFIG.format(graph="overlay", exec=exec_driver) + (
        f'[security]\ncapabilities = ["CAP_CHOWN", "kill"]\nseccomp_profile = "{profile}"\n')
    d = daemon_factory(config)
    import_image(d, busybox_tar)
    return d


def test_security_table_changes_what_containers_get(security_daemon):
    with security_daemon.client() as api:
        out = run(api, ["sh", "-c", "cat /proc/self/status; mkdir /tmp/x || echo refused"])
    assert int(field(out, "CapBnd"), 16) == 1 << CAP_CHOWN | 1 << CAP_KILL
    assert field(out, "Seccomp") == "2"
    assert "refused" in out and "Permission denied" in out


def test_unconfined_seccomp_from_the_config(daemon_factory, exec_driver, busybox_tar):
    config = CONTAINER_CONFIG.format(graph="overlay", exec=exec_driver) + '[security]\nseccomp_profile = "unconfined"\n'
    d = daemon_factory(config)
    import_image(d, busybox_tar)
    with d.client() as api:
        out = run(api, ["cat", "/proc/self/status"])
    assert field(out, "Seccomp") == "0"
    assert int(field(out, "CapBnd"), 16) == DOCKER_CAPBND


def test_bad_security_table_stops_the_daemon_with_its_reason(daemon_factory):
    d = daemon_factory('[security]\ncapabilities = ["CAP_FLY"]\n', start=False)
    with pytest.raises(RuntimeError, match="CAP_FLY"):
        d.start()


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker CLI (bash bootstrap test installs one)")
def test_docker_cli_cap_add_cap_drop_and_privileged(busybox_daemon):
    env = {**os.environ, "DOCKER_HOST": f"unix://{busybox_daemon.sock}", "DOCKER_CONFIG": str(busybox_daemon.base)}

    def docker(*args: str) -> str:
        done = subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    out = docker("run", "--rm", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD", "busybox", "cat", "/proc/self/status")
    assert int(field(out, "CapBnd"), 16) == (DOCKER_CAPBND | 1 << CAP_NET_ADMIN) & ~(1 << CAP_MKNOD)
    assert field(out, "Seccomp") == "2"
    out = docker("run", "--rm", "--privileged", "busybox", "sh", "-c",
                 "grep Seccomp: /proc/self/status; mount -t tmpfs none /tmp && echo mounted")
    assert field(out, "Seccomp") == "0" and "mounted" in out
