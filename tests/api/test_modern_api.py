"""Today's API versions (1.24–1.47) beside v1.6: the version rule, the system endpoints and the
containers' shapes, filters and lifecycle at ``/v1.47``, and that the 1.6 views never show the
newer fields (``api/http/versioning.py``, ``core/services/container_modern.py``)."""

from __future__ import annotations

import pytest
from conftest import eventually

V = "/v1.47"


@pytest.fixture
def api(busybox_daemon):
    with busybox_daemon.client() as client:
        yield client


@pytest.fixture
def made(api):
    ids: list[str] = []

    def create(cmd, name=None, prefix=V, **config):
        response = api.post(f"{prefix}/containers/create", json={"Image": "busybox", "Cmd": cmd, **config},
                            params={"name": name} if name else None)
        assert response.status_code == 201, response.text
        ids.append(response.json()["Id"])
        return response.json()["Id"]

    yield create
    for cid in ids:
        api.delete(f"/containers/{cid}", params={"force": 1})


@pytest.mark.parametrize("prefix", ["/v1.24", "/v1.44", V])
def test_modern_versions_get_todays_version_and_info(api, prefix):
    version = api.get(f"{prefix}/version").json()
    assert version["ApiVersion"] == "1.47" and version["MinAPIVersion"] == "1.0"
    assert version["Components"][0]["Name"] == "Engine"
    info = api.get(f"{prefix}/info").json()
    assert info["CgroupVersion"] in ("1", "2") and info["CgroupDriver"] == "cgroupfs"
    assert "name=seccomp,profile=builtin" in info["SecurityOptions"]
    assert info["Swarm"]["LocalNodeState"] == "inactive"
    assert {"Containers", "ContainersRunning", "Images", "Driver", "DriverStatus", "OSType"} <= set(info)


@pytest.mark.parametrize("prefix, status, text", [
    ("/v1.48", 400, "client version 1.48 is too new. Maximum supported API version is 1.47\n"),
    ("/v2.0", 400, "client version 2.0 is too new. Maximum supported API version is 1.47\n"),
    ("/v1.7", 400, "client version 1.7 is not supported: moorage serves API versions 1.0 to 1.6 and 1.24 to 1.47\n"),
    ("/v1.23", 400, "client version 1.23 is not supported: moorage serves API versions 1.0 to 1.6 and 1.24 to "
                    "1.47\n"),
    ("/v0", 404, ""), ("/v0.0", 404, ""),
])
def test_versions_not_served(api, prefix, status, text):
    response = api.get(f"{prefix}/version")
    assert response.status_code == status and response.text == text


def test_ping_get_and_head(api):
    for method in ("GET", "HEAD"):
        for prefix in ("", V):
            response = api.request(method, f"{prefix}/_ping")
            assert response.status_code == 200 and response.headers["api-version"]
            assert response.headers["ostype"] == "linux"


def test_create_inspect_and_list_in_todays_shape(api, made):
    cid = made(["sh", "-c", "exit 3"], name="modern-one", Labels={"team": "a", "tier": "x"}, StopSignal="SIGUSR1",
               StopTimeout=3, Healthcheck={"Test": ["CMD", "true"], "Interval": 1000000000})
    assert len(cid) == 64
    data = api.get(f"{V}/containers/{cid}/json").json()
    assert data["Id"] == cid and data["Name"] == "/modern-one"
    assert data["State"]["Status"] == "created" and data["State"]["OOMKilled"] is False
    config = data["Config"]
    assert config["Labels"] == {"team": "a", "tier": "x"} and config["StopSignal"] == "SIGUSR1"
    assert config["StopTimeout"] == 3 and config["Healthcheck"]["Test"] == ["CMD", "true"]
    assert "Memory" not in config and "PortSpecs" not in config
    assert data["HostConfig"]["NetworkMode"] == "bridge" and data["Mounts"] == []
    assert "bridge" in data["NetworkSettings"]["Networks"]
    assert api.post(f"{V}/containers/{cid}/start").status_code == 204
    waited = api.post(f"{V}/containers/{cid}/wait")
    assert waited.json() == {"StatusCode": 3, "Error": None}
    data = api.get(f"{V}/containers/{cid}/json").json()
    assert data["State"]["Status"] == "exited" and data["State"]["ExitCode"] == 3
    assert data["State"]["FinishedAt"] != "0001-01-01T00:00:00Z"
    # the 1.6 view of the same container never shows the newer fields
    legacy = api.get(f"/v1.6/containers/{cid}/json").json()
    assert "Labels" not in legacy["Config"] and "Memory" in legacy["Config"] and "Status" not in legacy["State"]
    assert api.get(f"/containers/{cid}/json").json() == legacy
    rows = api.get(f"{V}/containers/json", params={"all": 1, "filters": '{"label": ["team=a"]}'}).json()
    assert [r["Id"] for r in rows] == [cid]
    assert rows[0]["Labels"] == {"team": "a", "tier": "x"} and rows[0]["State"] == "exited"
    assert rows[0]["Status"].startswith("Exited (3)")


def test_legacy_create_refuses_todays_fields_by_name(api):
    response = api.post("/v1.6/containers/create", json={"Image": "busybox", "Cmd": ["true"],
                                                         "Labels": {"a": "b"}, "StopSignal": "SIGUSR1"})
    assert response.status_code == 400 and "Labels, StopSignal" in response.text


@pytest.mark.parametrize("body, field", [
    ({"Labels": {"a": 1}}, "Labels"), ({"StopTimeout": "x"}, "StopTimeout"),
    ({"Healthcheck": {"Test": "true"}}, "Healthcheck.Test"), ({"Healthcheck": {"Interval": -1}}, "Interval"),
])
def test_bad_modern_fields_are_400s_naming_them(api, body, field):
    response = api.post(f"{V}/containers/create", json={"Image": "busybox", "Cmd": ["true"], **body})
    assert response.status_code == 400 and field in response.text


def test_list_filters(api, made):
    one = made(["true"], name="flt-one", Labels={"k": "1"})
    two = made(["sh", "-c", "exit 2"], name="flt-two", Labels={"k": "2"})
    assert api.post(f"{V}/containers/{two}/start").status_code == 204
    api.post(f"{V}/containers/{two}/wait")

    def ids(filters, **params):
        response = api.get(f"{V}/containers/json", params={"filters": filters, **params})
        assert response.status_code == 200, response.text
        return {r["Id"] for r in response.json()} & {one, two}

    assert ids('{"label": ["k"]}', all=1) == {one, two}
    assert ids('{"label": ["k=2"]}', all=1) == {two}
    assert ids('{"status": ["created"]}') == {one}
    assert ids('{"exited": ["2"]}') == {two}
    assert ids('{"name": ["flt-one"]}', all=1) == {one}
    assert ids(f'{{"id": ["{one[:10]}"]}}', all=1) == {one}
    assert ids('{"ancestor": ["busybox"]}', all=1) == {one, two}
    assert ids(f'{{"before": ["{two}"]}}', all=1) == {one}
    assert ids(f'{{"since": ["{one}"]}}', all=1) == {two}
    assert len(api.get(f"{V}/containers/json", params={"limit": 1, "size": 1}).json()) == 1
    assert api.get(f"{V}/containers/json", params={"filters": '{"status": ["bogus"]}'}).status_code == 400
    assert api.get(f"{V}/containers/json", params={"filters": '{"colour": ["red"]}'}).status_code == 400


def test_kill_stop_restart_rename_and_wait_conditions(api, made):
    cid = made(["sh", "-c", "trap 'exit 7' USR1; echo trapped; while true; do sleep 0.1; done"], name="life")
    assert api.post(f"{V}/containers/{cid}/kill").status_code == 409  # not running
    assert api.post(f"{V}/containers/{cid}/start").status_code == 204
    eventually(lambda: b"trapped" in api.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1}).content,
               "the shell to install its trap")
    assert api.post(f"{V}/containers/{cid}/kill", params={"signal": "USR1"}).status_code == 204
    assert api.post(f"{V}/containers/{cid}/wait", params={"condition": "not-running"}).json()["StatusCode"] == 7
    assert api.post(f"{V}/containers/{cid}/stop").status_code == 304  # already stopped
    assert api.post(f"{V}/containers/{cid}/restart", params={"t": 1}).status_code == 204
    assert api.post(f"{V}/containers/{cid}/stop", params={"t": 5, "signal": "SIGKILL"}).status_code == 204
    assert api.get(f"{V}/containers/{cid}/json").json()["State"]["Status"] == "exited"
    assert api.post(f"{V}/containers/{cid}/rename", params={"name": "life2"}).status_code == 204
    assert api.get(f"{V}/containers/life2/json").json()["Id"] == cid
    assert api.post(f"{V}/containers/{cid}/wait", params={"condition": "bogus"}).status_code == 400


def test_wait_removed_and_prune(api, made):
    keep = made(["true"], name="prune-keep", Labels={"keep": "1"})
    gone = made(["true"], name="prune-gone")
    assert api.post(f"{V}/containers/{gone}/start").status_code == 204
    api.post(f"{V}/containers/{gone}/wait")
    pruned = api.post(f"{V}/containers/prune", params={"filters": '{"label!": ["keep"]}'}).json()
    assert gone in (pruned["ContainersDeleted"] or []) and keep not in pruned["ContainersDeleted"]
    assert api.get(f"{V}/containers/{gone}/json").status_code == 404
    assert api.get(f"{V}/containers/{keep}/json").status_code == 200
    assert api.post(f"{V}/containers/prune", params={"filters": '{"colour": ["x"]}'}).status_code == 400
