"""Lifecycle notifications keep the hookspecs' promise: a hook that raises is logged with its
plugin's name, the other plugins still hear of it, and the action stands with its state saved."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from conftest import CONTAINER_CONFIG, eventually, import_image, make_distribution
from hook_recorder import RECORDER, recorded_calls

from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.hookspecs import hookimpl


def test_a_failing_hook_is_logged_with_its_plugin_and_the_others_still_run(caplog):
    heard = []

    class Broken:
        @hookimpl
        def moorage_container_died(self, container_id, exit_code):
            raise RuntimeError("boom")

    class Older:  # a hookimpl written before the timings existed takes the parameters it knew
        @hookimpl
        def moorage_container_died(self, container_id, exit_code):
            heard.append((container_id, exit_code))

    pm = PluginManager()
    pm.register(Older(), name="older")
    pm.register(Broken(), name="broken-plugin")
    with caplog.at_level(logging.ERROR, logger="moorage.core.kernel.lifecycle"):
        LifecycleHooks(pm.hook).container_died("c" * 64, 3, "2026-01-01T00:00:00Z", 1.5, "native", "none")
    assert heard == [("c" * 64, 3)]
    [record] = caplog.records
    assert "'broken-plugin'" in record.getMessage() and "moorage_container_died" in record.getMessage()
    assert record.exc_info[1].args == ("boom",)


def test_no_hookimpl_means_no_work():
    class Config:
        def without_credentials(self):
            raise AssertionError("the values are built only for a hookimpl")

    LifecycleHooks(PluginManager().hook).daemon_configured(Config())


RAISING = '''
from moorage.core.sdk.hookspecs import hookimpl


@hookimpl
def moorage_container_created(container_id):
    raise RuntimeError("created hook broke")


@hookimpl
def moorage_container_started(container_id):
    raise RuntimeError("started hook broke")


@hookimpl
def moorage_container_died(container_id):
    raise RuntimeError("died hook broke")


@hookimpl
def moorage_container_destroyed(container_id):
    raise RuntimeError("destroyed hook broke")


@hookimpl
def moorage_image_deleted(image_id):
    raise RuntimeError("deleted hook broke")


@hookimpl
def moorage_daemon_configured(config):
    raise RuntimeError("configured hook broke")
'''



def saved_state(root: Path, cid: str) -> dict:
    return json.loads((root / "containers" / cid / "config.json").read_text())["State"]


@pytest.fixture
def hooked_daemon(daemon_factory, tmp_path, busybox_tar):
    site = tmp_path / "site"
    site.mkdir()
    # a plugin whose every lifecycle hook raises, and one that records the timings
    make_distribution(site, "moorage-raising", {"raising": RAISING, "timings": RECORDER},
                      {"raising": "raising", "timings": "timings"})
    d = daemon_factory(CONTAINER_CONFIG.format(graph="overlay", exec="native"), env={"PYTHONPATH": str(site)})
    import_image(d, busybox_tar, repo="hooked")
    return d


def test_raising_lifecycle_hooks_change_no_outcome_and_skip_no_state_write(hooked_daemon):
    d = hooked_daemon
    with d.client() as api:
        created = api.post("/containers/create", json={"Image": "hooked", "Cmd": ["/bin/sh", "-c", "exit 4"]})
        assert created.status_code == 201, created.text
        cid = api.get(f"/containers/{created.json()['Id']}/json").json()["ID"]
        assert saved_state(d.root, cid)["Running"] is False
        assert api.post(f"/containers/{cid}/start").status_code == 204
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 4}
        # the exit is saved although the died hook raised just before the save
        eventually(lambda: saved_state(d.root, cid)["Running"] is False and saved_state(d.root, cid)["ExitCode"] == 4,
                   "the exit to be saved", 20)
        assert api.post(f"/containers/{cid}/restart", params={"t": 1}).status_code == 204
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 4}
        sleeper = api.post("/containers/create", json={"Image": "hooked", "Cmd": ["/bin/sleep", "30"]}).json()["Id"]
        assert api.post(f"/containers/{sleeper}/start").status_code == 204
        assert saved_state(d.root, api.get(f"/containers/{sleeper}/json").json()["ID"])["Running"] is True
        assert api.post(f"/containers/{sleeper}/stop", params={"t": 1}).status_code == 204
        assert api.post(f"/containers/{sleeper}/wait").json()["StatusCode"] in (137, 143)
        assert api.delete(f"/containers/{sleeper}").status_code == 204
        assert api.delete(f"/containers/{cid}").status_code == 204
        assert not (d.root / "containers" / cid).exists()
        assert api.get("/containers/json", params={"all": 1}).json() == []
        deleted = api.delete("/images/hooked")
        assert deleted.status_code == 200 and any("Deleted" in row for row in deleted.json()), deleted.text
        assert api.get("/images/json").json() == []
    log = eventually(lambda: "destroyed hook broke" in d.log() and d.log(), "the hook's error in the log", 20)
    for hook in ("created", "started", "died", "destroyed", "deleted", "configured"):
        assert f"{hook} hook broke" in log
    assert "plugin 'raising' failed in moorage_container_died" in log


def test_hooks_give_timings_and_driver_names(hooked_daemon):
    d = hooked_daemon
    with d.client() as api:
        body = {"Image": "hooked", "Cmd": ["/bin/sh", "-c", "sleep 0.3"]}
        cid = api.post("/containers/create", json=body).json()["Id"]
        api.post(f"/containers/{cid}/start")
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 0}
        state = api.get(f"/containers/{cid}/json").json()

    def recorded(calls):
        return [c for c in calls if c["id"] == state["ID"]]

    created, started, died = recorded(recorded_calls(d.root, lambda calls: len(recorded(calls)) >= 3, timeout=20))
    assert created == {"hook": "created", "id": state["ID"], "cmd": body["Cmd"], "at": state["Created"],
                       "duration": created["duration"], "graph": "overlay"}
    assert started == {"hook": "started", "id": state["ID"], "pid": started["pid"], "at": state["State"]["StartedAt"],
                       "duration": started["duration"], "exec": "native", "network": "none", "graph": "overlay"}
    assert died == {"hook": "died", "id": state["ID"], "exit_code": 0, "at": state["State"]["FinishedAt"],
                    "run_time": died["run_time"], "exec": "native", "network": "none"}
    assert 0 < created["duration"] < 30 and 0 < started["duration"] < 30
    assert 0.3 <= died["run_time"] < 30
