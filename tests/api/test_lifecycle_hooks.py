"""The lifecycle hooks reach a third-party plugin loaded through its entry point."""

from __future__ import annotations

import pytest
from conftest import CONTAINER_CONFIG, import_image, make_distribution
from hook_recorder import RECORDER, recorded_calls


@pytest.fixture(scope="module")
def hooked(tmp_path_factory, busybox_tar, request):
    site = tmp_path_factory.mktemp("site")
    make_distribution(site, "moorage-recorder", {"recorder": RECORDER}, {"recorder": "recorder"})
    from conftest import Daemon

    with Daemon(tmp_path_factory.mktemp("hooked"), CONTAINER_CONFIG.format(graph="overlay", exec="native"),
                env={"PYTHONPATH": str(site)}).start() as d:
        yield d


def calls(d, until=lambda found: True) -> list[dict]:
    return recorded_calls(d.root, until)


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
    created = [c for c in calls(hooked) if c["hook"] == "created" and c["id"] == full]
    assert len(created) == 1 and created[0]["cmd"] == ["/bin/sh", "-c", "exit 4"]


def test_hook_moorage_container_started(hooked, busybox_tar):
    full, _ = lifecycle(hooked, busybox_tar)
    started = [c for c in calls(hooked) if c["hook"] == "started" and c["id"] == full]
    assert len(started) == 1 and started[0]["pid"] > 1


def test_hook_moorage_container_died(hooked, busybox_tar):
    full, _ = lifecycle(hooked, busybox_tar)
    def died(found):
        return [c for c in found if c["hook"] == "died" and c["id"] == full]
    assert [c["exit_code"] for c in died(calls(hooked, died))] == [4]


def test_hook_moorage_container_destroyed(hooked, busybox_tar):
    full, _ = lifecycle(hooked, busybox_tar)
    done = calls(hooked, lambda found: any(c["hook"] == "destroyed" and c["id"] == full for c in found))
    assert [c["hook"] for c in done if c["id"] == full] == ["created", "started", "died", "destroyed"]


def test_hook_moorage_image_deleted(hooked, busybox_tar):
    _, image = lifecycle(hooked, busybox_tar)
    found = calls(hooked, lambda found: any(c["hook"] == "image_deleted" and c["id"].startswith(image)
                                            for c in found))
    deleted = [c["id"] for c in found if c["hook"] == "image_deleted"]
    assert any(d.startswith(image) and len(d) == 64 for d in deleted)
