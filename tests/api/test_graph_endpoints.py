"""The image and container filesystem endpoints through the API on every graph driver (btrfs
with the daemon's root on a loop-mounted btrfs): import, tag, inspect, history, viz, changes,
export, copy, commit, insert and rmi."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest
from conftest import CONTAINER_CONFIG, import_image


@pytest.fixture(params=["vfs", "overlay", "btrfs"])
def graph_daemon(request, daemon_factory, busybox_tar):
    flags = []
    if request.param == "btrfs":
        flags = ["-g", str(request.getfixturevalue("btrfs_mount") / f"root-{uuid.uuid4().hex[:8]}")]
    d = daemon_factory(CONTAINER_CONFIG.format(graph=request.param, exec="native"), flags=flags)
    d.image_id = import_image(d, busybox_tar)
    d.graph = request.param
    return d


def test_filesystem_endpoints_on_each_graph_driver(graph_daemon, tmp_path):
    with graph_daemon.client() as api:
        assert api.get("/info").json()["Driver"] == graph_daemon.graph
        assert api.post("/images/busybox/tag", params={"repo": "copy", "tag": "t"}).status_code == 201
        assert api.get("/images/copy:t/json").json()["id"].startswith(graph_daemon.image_id)
        assert len(api.get("/images/copy:t/history").json()) == 1
        assert api.get("/images/viz").text.startswith("digraph docker {")

        cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": [
            "/bin/sh", "-c", "echo new > /new; rm /etc/group; chmod 4755 /bin/busybox"]}).json()["Id"]
        api.post(f"/containers/{cid}/start")
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 0}
        changes = {c["Path"]: c["Kind"] for c in api.get(f"/containers/{cid}/changes").json()}
        assert changes["/new"] == 1 and changes["/etc/group"] == 2 and changes["/bin/busybox"] == 0
        export = tarfile.open(fileobj=io.BytesIO(api.get(f"/containers/{cid}/export").content))
        assert "./new" in export.getnames() and "./etc/group" not in export.getnames()
        assert export.getmember("./bin/busybox").mode & 0o4000
        copy = api.post(f"/containers/{cid}/copy", json={"Resource": "/new"})
        copied = tarfile.open(fileobj=io.BytesIO(copy.content))
        assert copied.extractfile("new").read() == b"new\n"

        image = api.post("/commit", params={"container": cid, "repo": "committed"}).json()["Id"]
        child = api.post("/containers/create", json={"Image": "committed", "Cmd": [
            "/bin/sh", "-c", "cat /new; test -e /etc/group || echo gone"]}).json()["Id"]
        api.post(f"/containers/{child}/start")
        api.post(f"/containers/{child}/wait")
        out = api.post(f"/containers/{child}/attach", params={"logs": 1, "stdout": 1}).content
        assert b"new\n" in out and b"gone\n" in out

        for container in (child, cid):
            assert api.delete(f"/containers/{container}").status_code == 204
        deleted = api.delete("/images/committed").json()
        assert {"Untagged": image} in deleted and any(d.get("Deleted", "").startswith(image) for d in deleted)
        assert api.delete("/images/copy:t").json() == [{"Untagged": graph_daemon.image_id}]
        assert json.loads(api.get("/images/json").text)[0]["Repository"] == "busybox"
