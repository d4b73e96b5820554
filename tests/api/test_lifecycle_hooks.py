"""The lifecycle hooks reach a third-party plugin loaded through its entry point."""

from __future__ import annotations

import json
import time

import pytest
from conftest import CONTAINER_CONFIG, import_image, make_distribution

RECORDER = '''
import json, os
from moorage.core.hookspecs import hookimpl

_path = None


def _record(**event):
    with open(_path, "a") as f:
        f.write(json.dumps(event) + "\\n")


@hookimpl
def moorage_daemon_configured(config):
    global _path
    _path = os.path.join(str(config["daemon"]["root"]), "hook-calls.jsonl")


@hookimpl
def moorage_container_created(container_id, config):
    _record(hook="created", id=container_id, cmd=config["Cmd"])


@hookimpl
def moorage_container_started(container_id, pid):
    _record(hook="started", id=container_id, pid=pid)


@hookimpl
def moorage_container_died(container_id, exit_code):
    _record(hook="died", id=container_id, exit_code=exit_code)


@hookimpl
def moorage_container_destroyed(container_id):
    _record(hook="destroyed", id=container_id)


@hookimpl
def moorage_image_deleted(image_id):
    _record(hook="image_deleted", id=image_id)
'''


@pytest.fixture(scope="module")
def hooked(tmp_path_factory, busybox_tar, request):
    site = tmp_path_factory.mktemp("site")
    make_distribution(site, "moorage-recorder", {"recorder": RECORDER}, {"recorder": "recorder"})
    from conftest import Daemon, unmount_below

    d = Daemon(tmp_path_factory.mktemp("hooked"), CONTAINER_CONFIG.format(graph="overlay", exec="native"),
               env={"PYTHONPATH": str(site)}).start()
    yield d
    d.remove_all_containers()
    d.stop()
    unmount_below(d.base)


def calls(d, until=lambda found: True, timeout: float = 10) -> list[dict]:
    """The recorded hook calls, once ``until(calls)`` holds (some hooks run after the request
    that caused them was answered)."""
    path = d.root / "hook-calls.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def lifecycle(d, busybox_tar) -> tuple[str, str]:
    image = import_image(d, busybox_tar, repo="hooked")
    with d.client() as api:
        cid = api.post("/containers/create", json={"Image": "hooked", "Cmd": ["/bin/sh", "-c", "exit 4"]}).json()["Id"]
        api.post(f"/containers/{cid}/start")
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 4}
        full = api.get(f"/containers/{cid}/json").json()["ID"]
        assert api.delete(f"/containers/{cid}").status_code == 204
        assert api.delete("/images/hooked").status_code == 200
    return full, image


def test_hook_moorage_container_created(hooked, busybox_tar):
    full, _ = lifecycle(hooked, busybox_tar)
    assert {"hook": "created", "id": full, "cmd": ["/bin/sh", "-c", "exit 4"]} in calls(hooked)


def test_hook_moorage_container_started(hooked, busybox_tar):
    full, _ = lifecycle(hooked, busybox_tar)
    started = [c for c in calls(hooked) if c["hook"] == "started" and c["id"] == full]
    assert len(started) == 1 and started[0]["pid"] > 1


def test_hook_moorage_container_died(hooked, busybox_tar):
    full, _ = lifecycle(hooked, busybox_tar)
    died = {"hook": "died", "id": full, "exit_code": 4}
    assert died in calls(hooked, lambda found: died in found)


def test_hook_moorage_container_destroyed(hooked, busybox_tar):
    full, _ = lifecycle(hooked, busybox_tar)
    done = calls(hooked, lambda found: {"hook": "destroyed", "id": full} in found)
    assert [c["hook"] for c in done if c["id"] == full] == ["created", "started", "died", "destroyed"]


def test_hook_moorage_image_deleted(hooked, busybox_tar):
    _, image = lifecycle(hooked, busybox_tar)
    found = calls(hooked, lambda found: any(c["hook"] == "image_deleted" and c["id"].startswith(image)
                                            for c in found))
    deleted = [c["id"] for c in found if c["hook"] == "image_deleted"]
    assert any(d.startswith(image) and len(d) == 64 for d in deleted)
