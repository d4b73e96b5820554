"""``/volumes`` through a real daemon: create, inspect, list and its filters, remove, prune,
events; unversioned and ``/v1.NN`` paths alike."""

from __future__ import annotations

import json
import re
import time

import pytest

A = "a" * 64


def test_create_and_inspect_in_dockers_shape(api):
    created = api.post("/volumes/create", json={"Name": "shape", "Labels": {"team": "db"}})
    assert created.status_code == 201, created.text
    volume = created.json()
    assert list(volume) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]
    assert (volume["Name"], volume["Driver"], volume["Labels"], volume["Options"], volume["Scope"]) == \
        ("shape", "local", {"team": "db"}, None, "local")
    assert volume["Mountpoint"].endswith("/volume/local/shape/_data")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", volume["CreatedAt"])
    for path in ("/volumes/shape", "/v1.44/volumes/shape", "/v1.24/volumes/shape"):
        assert api.get(path).json() == volume
    assert api.get("/v1.41/volumes").json() == {"Volumes": [volume], "Warnings": []}


def test_create_without_a_name_makes_an_anonymous_volume(api):
    volume = api.post("/volumes/create", json={}).json()
    assert re.fullmatch(r"[0-9a-f]{64}", volume["Name"])
    assert volume["Labels"] == {"com.docker.volume.anonymous": ""}
    assert api.post("/volumes/create").status_code == 201  # no body at all, as Docker


def test_creating_an_existing_name_returns_it(api):
    first = api.post("/volumes/create", json={"Name": "again", "Labels": {"n": "1"}}).json()
    second = api.post("/volumes/create", json={"Name": "again", "Driver": "local", "Labels": {"n": "2"}})
    assert second.status_code == 201 and second.json() == first


@pytest.mark.parametrize(("body", "status", "message"), [
    ({"Name": "x"}, 400, "too short"),
    ({"Name": "a/b"}, 400, "includes invalid characters"),
    ({"Name": "opts", "DriverOpts": {"bogus": "1"}}, 400, 'invalid option: "bogus"'),
    ({"Name": "opts", "DriverOpts": {"type": "tmpfs"}}, 400, 'missing required option: "device"'),
    ({"Name": "opts", "DriverOpts": {"size": "10m"}}, 400, "quota size requested but no quota support"),
    ({"Name": "opts", "DriverOpts": {"o": 1}}, 400, "map[string]string"),
    ({"Name": "opts", "Driver": "nope"}, 404, 'plugin "nope" not found'),
])
def test_refused_creates_name_the_problem_and_leave_nothing(api, body, status, message):
    answer = api.post("/volumes/create", json=body)
    assert (answer.status_code, message in answer.text) == (status, True), answer.text
    assert api.get("/volumes").json()["Volumes"] == []


def test_options_are_kept_and_shown(api):
    options = {"type": "tmpfs", "device": "tmpfs", "o": "size=8m"}
    volume = api.post("/volumes/create", json={"Name": "opted", "DriverOpts": options}).json()
    assert volume["Options"] == options
    assert api.get("/volumes/opted").json()["Options"] == options


def names(api, **filters) -> list[str]:
    answer = api.get("/volumes", params={"filters": json.dumps(filters)} if filters else None)
    assert answer.status_code == 200, answer.text
    return [v["Name"] for v in answer.json()["Volumes"]]


def test_list_filters(api, holder):
    for name, labels in (("web-data", {"app": "web", "tier": "front"}), ("db-data", {"app": "db"}),
                         ("cache", {})):
        api.post("/volumes/create", json={"Name": name, "Labels": labels})
    holder.mount("db-data", A)
    assert names(api) == ["cache", "db-data", "web-data"]
    assert names(api, dangling=["true"]) == ["cache", "web-data"]
    assert names(api, dangling=["0"]) == ["db-data"]
    assert names(api, name=["data"]) == ["db-data", "web-data"]
    assert names(api, name=["^web"]) == ["web-data"]
    assert names(api, label=["app"]) == ["db-data", "web-data"]
    assert names(api, label=["app=web"]) == ["web-data"]
    assert names(api, label=["app=web", "tier=front"]) == ["web-data"]
    assert names(api, driver=["local"]) == ["cache", "db-data", "web-data"]
    assert names(api, driver=["other"]) == []
    assert api.get("/volumes", params={"filters": '{"dangling": {"true": true}}'}).json()["Volumes"][0]["Name"] \
        == "cache"  # the older map form


@pytest.mark.parametrize(("filters", "message"), [
    ({"colour": ["red"]}, "invalid filter 'colour'"),
    ({"dangling": ["maybe"]}, "invalid filter 'dangling=maybe'"),
])
def test_bad_list_filters_are_400(api, filters, message):
    answer = api.get("/volumes", params={"filters": json.dumps(filters)})
    assert answer.status_code == 400 and message in answer.text


def test_remove(api, holder):
    api.post("/volumes/create", json={"Name": "doomed"})
    assert api.delete("/volumes/doomed").status_code == 204
    assert api.get("/volumes/doomed").status_code == 404
    assert api.delete("/volumes/doomed").status_code == 404
    assert api.delete("/volumes/doomed", params={"force": "1"}).status_code == 204


def test_remove_in_use_is_409_even_forced(api, holder):
    api.post("/volumes/create", json={"Name": "held"})
    (holder.mount("held", A) / "file").write_text("data")
    for params in (None, {"force": "true"}):
        answer = api.delete("/v1.44/volumes/held", params=params)
        assert answer.status_code == 409 and "in use" in answer.text
    assert (holder.path("held") / "file").read_text() == "data"
    holder.unmount("held", A)
    assert api.delete("/volumes/held").status_code == 204


def test_prune_removes_unused_anonymous_volumes_and_counts_their_bytes(api, holder):
    anonymous = api.post("/volumes/create", json={}).json()["Name"]
    busy = api.post("/volumes/create", json={}).json()["Name"]
    api.post("/volumes/create", json={"Name": "named"})
    (holder.path(anonymous) / "f").write_bytes(b"x" * 3000)
    holder.mount(busy, A)
    pruned = api.post("/volumes/prune").json()
    assert pruned == {"VolumesDeleted": [anonymous], "SpaceReclaimed": 3000}
    assert sorted(names(api)) == sorted([busy, "named"])


def test_prune_all_and_label_filters(api):
    for name, labels in (("keep-me", {"keep": "1"}), ("drop-me", {}), ("opted", {})):
        api.post("/volumes/create", json={"Name": name, "Labels": labels,
                                          **({"DriverOpts": {"type": "tmpfs", "device": "tmpfs"}}
                                             if name == "opted" else {})})
    answer = api.post("/volumes/prune", params={"filters": json.dumps({"all": ["true"], "label!": ["keep"]})})
    assert answer.json()["VolumesDeleted"] == ["drop-me"]  # a volume with options reclaims nothing: kept
    assert api.post("/volumes/prune", params={"filters": json.dumps({"bogus": ["1"]})}).status_code == 400


def test_prune_before_api_1_42_removes_named_volumes_too(api):
    api.post("/volumes/create", json={"Name": "old-client"})
    assert api.post("/v1.41/volumes/prune").json()["VolumesDeleted"] == ["old-client"]


def test_create_and_destroy_are_events(api):
    api.post("/volumes/create", json={"Name": "evented"})
    api.delete("/volumes/evented")
    stream = api.get("/events", params={"since": 1, "until": int(time.time()) + 1,
                                        "filters": json.dumps({"type": ["volume"]})}).text
    seen = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]) for e in map(json.loads, _objects(stream))]
    assert ("create", "evented", {"driver": "local"}) in seen and ("destroy", "evented", {"driver": "local"}) in seen


def _objects(text: str) -> list[str]:
    decoder, out, at = json.JSONDecoder(), [], 0
    while at < len(text):
        obj, end = decoder.raw_decode(text, at)
        out.append(json.dumps(obj))
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return out


def test_volumes_survive_a_killed_daemon(volume_daemon, api):
    api.post("/volumes/create", json={"Name": "lasting", "Labels": {"k": "v"}})
    path = api.get("/volumes/lasting").json()["Mountpoint"]
    with open(f"{path}/file", "w") as f:
        f.write("data")
    before = api.get("/volumes/lasting").json()
    volume_daemon.kill()
    volume_daemon.start()
    with volume_daemon.client() as again:
        assert again.get("/volumes/lasting").json() == before
    with open(f"{path}/file") as f:
        assert f.read() == "data"
