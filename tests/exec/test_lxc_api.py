"""What only the lxc exec driver does through the API: its selection and ``LxcConf``.

The shared API tests (tests/api, tests/network/test_daemon.py) run once per exec driver through
the ``exec_driver`` fixture of tests/conftest.py, lxc included.
"""

from __future__ import annotations

import pytest
from conftest import CONTAINER_CONFIG, exec_driver_unsupported, frames

REASON = exec_driver_unsupported("lxc")
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

LXC_CONFIG = CONTAINER_CONFIG.format(graph="overlay", exec="lxc")


@pytest.fixture(scope="module")
def exec_driver() -> str:
    """This module's daemons use lxc (tests/conftest.py's ``busybox_daemon`` reads this)."""
    return "lxc"


def test_lxc_driver_is_the_one_in_use(busybox_daemon):
    with busybox_daemon.client() as client:
        info = client.get("/info").json()
    assert info["ExecutionDriver"] == "lxc"


def _create(api, cmd) -> str:
    response = api.post("/containers/create", json={"Image": "busybox", "Cmd": cmd})
    assert response.status_code == 201, response.text
    return response.json()["Id"]


def test_lxc_conf_entries_are_appended(busybox_daemon):
    with busybox_daemon.client() as api:
        cid = _create(api, ["hostname"])
        body = {"LxcConf": [{"Key": "lxc.uts.name", "Value": "fromlxcconf"}]}
        assert api.post(f"/containers/{cid}/start", json=body).status_code == 204
        assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0
        out = api.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1}).content
        assert frames(out) == [(1, b"fromlxcconf\n")]
        api.delete(f"/containers/{cid}")


def test_rejected_lxc_conf_key_is_a_500_naming_it_and_leaves_the_container_stopped(busybox_daemon):
    with busybox_daemon.client() as api:
        cid = _create(api, ["sleep", "100"])
        body = {"LxcConf": [{"Key": "lxc.no.such.key", "Value": "1"}]}
        response = api.post(f"/containers/{cid}/start", json=body)
        assert response.status_code == 500
        assert "lxc.no.such.key" in response.text
        state = api.get(f"/containers/{cid}/json").json()["State"]
        assert state["Running"] is False and state["Pid"] == 0
        fixed = {"LxcConf": [{"Key": "lxc.uts.name", "Value": "fixed"}]}  # the hostConfig is kept: replace it
        again = api.post(f"/containers/{cid}/start", json=fixed)
        assert again.status_code == 204, again.text  # nothing of the failed start is in the way
        api.post(f"/containers/{cid}/kill")
        assert api.delete(f"/containers/{cid}").status_code == 204


def test_selected_with_the_e_flag(daemon_factory):
    d = daemon_factory('[network]\ndriver = "none"\n', flags=["-e", "lxc"])
    with d.client() as client:
        assert client.get("/info").json()["ExecutionDriver"] == "lxc"
