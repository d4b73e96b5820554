"""The example third-party package examples/moorage-macvlan, installed as a user installs it
(`bash bootstrap test` does): its own tests (the network contract run by name), `moorage
drivers` listing it, and a daemon whose containers reach each other over it."""

from __future__ import annotations

import importlib.metadata
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONTAINER_CONFIG, MOORAGE, import_image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "moorage-macvlan"


@pytest.fixture(scope="module", autouse=True)
def installed():
    try:
        importlib.metadata.distribution("moorage-macvlan")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("examples/moorage-macvlan is not installed: `bash bootstrap test` installs it")


def test_the_examples_own_tests_pass():
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "tests"], cwd=EXAMPLE,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout


def test_moorage_drivers_lists_it(tmp_path, parent_nic):
    config = tmp_path / "daemon.toml"
    config.write_text(f'[network]\ndriver = "macvlan"\n[network.macvlan]\nparent = "{parent_nic}"\n'
                      f'subnet = "172.30.7.0/24"\n')
    done = subprocess.run([*MOORAGE, "drivers", "--json", "--config", str(config)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    network = {d["name"]: d for d in json.loads(done.stdout)["families"]["network"]["drivers"]}
    macvlan = network["macvlan"]
    assert (macvlan["distribution"], macvlan["version"]) == ("moorage-macvlan", "0.1.0")
    assert macvlan["supported"] is True and macvlan["selected"] is True
    assert {o["name"]: o["required"] for o in macvlan["options"]} == {
        "parent": True, "subnet": True, "range": False, "gateway": False, "mode": False}
    # without its parent NIC it says why it cannot work here
    config.write_text('[network.macvlan]\nparent = "no-such-nic0"\nsubnet = "172.30.7.0/24"\n')
    done = subprocess.run([*MOORAGE, "drivers", "--json", "--config", str(config)], capture_output=True, text=True,
                          timeout=300)
    network = {d["name"]: d for d in json.loads(done.stdout)["families"]["network"]["drivers"]}
    assert network["macvlan"]["reason"] == "the parent NIC 'no-such-nic0' does not exist on this host"


def test_containers_reach_each_other_over_it(daemon_factory, busybox_tar, parent_nic):
    net = f"172.30.{random.randint(0, 255)}"
    config = CONTAINER_CONFIG.format(graph="overlay", exec="native").replace('[network]\ndriver = "none"\n', "")
    config += (f'[network]\ndriver = "macvlan"\n[network.macvlan]\nparent = "{parent_nic}"\nsubnet = "{net}.0/24"\n'
               f'range = "{net}.16/28"\n')
    daemon = daemon_factory(config)
    import_image(daemon, busybox_tar)
    with daemon.client() as api:
        server = api.post("/containers/create", json={"Image": "busybox", "Cmd": [
            "sh", "-c", "mkdir -p /www && echo hello-over-macvlan > /www/index.html && exec httpd -f -p 80 -h /www"]})
        server = server.json()["Id"]
        assert api.post(f"/containers/{server}/start").status_code == 204
        address = api.get(f"/containers/{server}/json").json()["NetworkSettings"]["IPAddress"]
        assert address.startswith(f"{net}.") and 16 < int(address.rsplit(".", 1)[1]) < 32  # from the range
        client = api.post("/containers/create", json={"Image": "busybox", "Cmd": [
            "sh", "-c", f"for i in 1 2 3 4 5 6 7 8 9 10; do wget -q -O - http://{address}/index.html && exit 0; "
                        "sleep 0.3; done; exit 1"]}).json()["Id"]
        assert api.post(f"/containers/{client}/start").status_code == 204
        assert api.post(f"/containers/{client}/wait", timeout=60).json()["StatusCode"] == 0
        out = api.post(f"/containers/{client}/attach", params={"logs": 1, "stdout": 1, "stderr": 1}).content
        assert b"hello-over-macvlan" in out
        # the host has no interface of theirs: each eth0 lives in its container's namespace
        macvlans = json.loads(subprocess.run(["ip", "-j", "link", "show", "type", "macvlan"], capture_output=True,
                                             text=True, check=True).stdout or "[]")
        assert [m["ifname"] for m in macvlans if m.get("link") == parent_nic] == []
