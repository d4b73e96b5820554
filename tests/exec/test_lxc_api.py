"""The API-level container tests, run unchanged against a daemon started with the lxc exec driver,
plus ``LxcConf`` through the API.

The modules ``tests/api/test_containers.py`` and ``tests/api/test_restore.py`` are loaded as
copies whose daemon uses ``[exec] driver = "lxc"``: their tests and fixtures become this
module's, so the same lifecycle, attach, logs and live-restore checks run once per exec driver.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import uuid
from pathlib import Path

import pytest
from conftest import CONTAINER_CONFIG, Daemon, import_image, unmount_below

from moorage.core.driver import NoOptions
from moorage.core.errors import NotSupported


def _skip_reason() -> str | None:
    from moorage.drivers.exec.lxc.driver import LxcDriver

    try:
        LxcDriver(Path("/nonexistent"), NoOptions(), {})
    except NotSupported as exc:
        return str(exc)
    return None


REASON = _skip_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

API_TESTS = Path(__file__).resolve().parent.parent / "api"
LXC_CONFIG = CONTAINER_CONFIG.format(graph="overlay", exec="lxc")


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"lxc_copy_of_{name}", API_TESTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _adopt(module, rename: str = "") -> None:
    """Make the module's tests and fixtures this module's (tests renamed to say where they run)."""
    for attr, value in vars(module).items():
        if attr.startswith("test_") and callable(value):
            globals()[f"test_{rename}{attr[5:]}"] = value
        elif hasattr(value, "_pytestfixturefunction") or type(value).__name__ == "FixtureFunctionDefinition":
            globals()[attr] = value


_containers = _load("test_containers")
_adopt(_containers)
_restore = _load("test_restore")
_restore.CONFIG = LXC_CONFIG
_adopt(_restore)


@pytest.fixture(scope="module")
def busybox_daemon(tmp_path_factory, busybox_tar):
    """As the shared fixture of tests/conftest.py, but with the lxc exec driver."""
    base = tmp_path_factory.mktemp(f"bbd-lxc-{uuid.uuid4().hex[:6]}")
    d = Daemon(base, LXC_CONFIG).start()
    try:
        d.image_id = import_image(d, busybox_tar)
        yield d
    finally:
        d.remove_all_containers()
        d.stop()
        unmount_below(d.base)
        shutil.rmtree(d.base, ignore_errors=True)


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
        assert _containers.frames(out) == [(1, b"fromlxcconf\n")]
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
