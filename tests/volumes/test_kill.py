"""A daemon SIGKILLed at each step of a volume's create and remove restarts with a consistent
store: the volume whole or absent, no staging or half-removed directory left, and a bound host
directory untouched.

A test-only plugin (a third-party distribution on ``PYTHONPATH``, as in
tests/api/test_kill_during_start.py) registers ``killing-local``: the ``local`` driver whose
``step`` kills the daemon itself when ``<root>/kill-at`` names the step.
"""

from __future__ import annotations

import os

import httpx
import pytest
from conftest import Daemon, make_distribution

KILLING = '''
import os, signal
from moorage.core.sdk.hookspecs import hookimpl
from moorage.drivers.volume.local import LocalVolumeDriver


class KillingLocal(LocalVolumeDriver):
    name = "killing-local"

    def step(self, name, step):
        try:
            with open(os.path.join(self.context.root, "kill-at")) as f:
                wanted = f.read().strip()
        except FileNotFoundError:
            return
        if wanted == step:
            os.unlink(os.path.join(self.context.root, "kill-at"))
            os.kill(os.getpid(), signal.SIGKILL)


@hookimpl
def moorage_volume_register():
    return [KillingLocal]
'''


@pytest.fixture
def killing_daemon(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "moorage-killing", {"killing": KILLING}, {"killing": "killing"})
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    daemon = Daemon(tmp_path / "daemon", '[volume]\ndriver = "killing-local"\n', env={"PYTHONPATH": path})
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.dispose()


def restarted(daemon: Daemon, request) -> httpx.Response:
    """Send ``request`` (a function of a client), which kills the daemon; start it again."""
    with daemon.client() as client, pytest.raises(httpx.HTTPError):
        request(client)
    daemon.proc.wait(10)
    assert not daemon.running()
    daemon.start()


def leftovers(daemon: Daemon) -> list[str]:
    home = daemon.root / "volume" / "killing-local"
    return [e for e in os.listdir(home) if e.startswith(".")]


@pytest.mark.parametrize(("step", "exists"), [("staged", False), ("published", True)])
def test_kill_during_create(killing_daemon, tmp_path, step, exists):
    (killing_daemon.root / "kill-at").write_text(step)
    body = {"Name": "crashed", "Labels": {"k": "v"}, "DriverOpts": {"type": "tmpfs", "device": "tmpfs"}}
    restarted(killing_daemon, lambda c: c.post("/volumes/create", json=body))
    with killing_daemon.client() as client:
        answer = client.get("/volumes/crashed")
        assert answer.status_code == (200 if exists else 404), answer.text
        if exists:
            volume = answer.json()
            assert (volume["Driver"], volume["Labels"], volume["Options"]) == \
                ("killing-local", {"k": "v"}, body["DriverOpts"])
            assert os.path.isdir(volume["Mountpoint"])
        assert leftovers(killing_daemon) == []
        # the name is usable either way
        assert client.post("/volumes/create", json=body).status_code == 201
        assert client.delete("/volumes/crashed").status_code == 204


@pytest.mark.parametrize("step", ["unpublished", "deleted"])
def test_kill_during_remove_of_a_bind(killing_daemon, tmp_path, step):
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep")
    with killing_daemon.client() as client:
        body = {"Name": "bound", "DriverOpts": {"type": "none", "device": str(host), "o": "bind"}}
        assert client.post("/volumes/create", json=body).status_code == 201
        mountpoint = client.get("/volumes/bound").json()["Mountpoint"]
    (killing_daemon.root / "kill-at").write_text(step)
    restarted(killing_daemon, lambda c: c.delete("/volumes/bound"))
    with killing_daemon.client() as client:
        assert client.get("/volumes/bound").status_code == 404
        assert client.get("/volumes").json()["Volumes"] == []
    assert leftovers(killing_daemon) == [] and not os.path.exists(mountpoint)
    assert (host / "precious").read_text() == "keep"
