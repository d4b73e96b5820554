"""Names, references and paths refused where they enter, through the real endpoints: every
refused spelling gets a 4xx with a plain message, and nothing is stored (no container, image,
tag, name or host config)."""

from __future__ import annotations

import io
import os
import tarfile

import pytest
from conftest import make_tar

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.validation import check_repository, check_tag

BAD_CONTAINER_NAMES = ["a\x00b", "x" * 300, "a", "-lead", ".hidden", "a/b", "../x", "..", "a b", "a\nb", "é-name",
                       "a:b", "/"]
BAD_REPOSITORIES = ["../../x", "UPPER", "a//b", "a/", "/a", "a/../b", "a/./b", "x\x00y", "a b", "a" * 256,
                    "bad_host:port:1/x", "ho st:5000/x", "http://host/x"]
BAD_TAGS = ["..", ".hidden", "-lead", "a/b", "a:b", "t\x00", "t\n", "a" * 129, "é"]


@pytest.fixture(scope="module")
def exec_driver() -> str:
    """Names do not depend on the exec driver: one daemon (tests/conftest.py's busybox_daemon)."""
    return "native"


@pytest.fixture
def api(busybox_daemon):
    with busybox_daemon.client() as client:
        yield client


def snapshot(daemon, api) -> tuple:
    """What a refused request must leave as it was."""
    root = daemon.root
    return (sorted(r["Id"] for r in api.get("/containers/json", params={"all": 1}).json()),
            sorted(r["Id"] for r in api.get("/images/json", params={"all": 1}).json()),
            sorted(os.listdir(root / "containers")),
            sorted(os.listdir(root / "graph")),
            sorted(p.read_bytes() for p in root.glob("repositories-*")))


def refused(answer, *fragments: str) -> None:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.text.strip() and all(f in answer.text for f in fragments), answer.text


def test_rules_refuse_each_spelling_and_keep_the_good_ones():
    for name in BAD_REPOSITORIES:
        with pytest.raises(InvalidParameter):
            check_repository(name)
    for tag in BAD_TAGS:
        with pytest.raises(InvalidParameter):
            check_tag(tag)
    for name in ("busybox", "library/busybox", "localhost:5000/a/b", "127.0.0.1:5000/x", "utest:5000/docker",
                 "docker.io/library/busybox", "[::1]:5000/x", "a-b__c/e_f.g"):
        check_repository(name)
    for tag in ("latest", "v1.0", "1", "_x", "a-b.c", "A" * 128):
        check_tag(tag)


def test_container_names(busybox_daemon, api, make):
    before = snapshot(busybox_daemon, api)
    for name in BAD_CONTAINER_NAMES:
        answer = api.post("/containers/create", params={"name": name}, json={"Image": "busybox", "Cmd": ["true"]})
        refused(answer, "container name")
        assert snapshot(busybox_daemon, api) == before, name
    good = make(["true"], name="Good-name_1.2")
    assert api.get(f"/containers/{good}/json").json()["Name"] == "/Good-name_1.2"
    assert api.get("/containers/Good-name_1.2/json").status_code == 200


@pytest.mark.parametrize("field, value", [
    ("Env", ["A=\x00"]), ("Cmd", ["echo", "a\x00b"]), ("WorkingDir", "/tmp\x00"), ("Volumes", {"/v\x00": {}}),
    ("Volumes", {"/a/..": {}}), ("Hostname", "h\nx"),
])
def test_create_config_paths_and_text(busybox_daemon, api, field, value):
    before = snapshot(busybox_daemon, api)
    body = {"Image": "busybox", "Cmd": ["true"], field: value}
    refused(api.post("/containers/create", json=body), "Bad parameter")
    assert snapshot(busybox_daemon, api) == before


def test_start_binds_and_links(busybox_daemon, api, make):
    cid = make(["true"])
    full = api.get(f"/containers/{cid}/json").json()["ID"]
    record = busybox_daemon.root / "containers" / full / "config.json"  # the host config is kept here
    before = record.read_bytes()
    # a bind's source is a host path used as given (docs/security.md); its destination, resolved
    # inside the rootfs, is cleaned instead (tests/cli/test_docker_rules.py)
    for host_config in ({"Binds": ["/tmp/../etc:/x"]}, {"Binds": ["/tmp\x00:/x"]}, {"Binds": ["/tmp:/x\x00"]},
                        {"Links": ["a-name:bad alias"]}, {"Links": ["a-name:a\x00"]}):
        refused(api.post(f"/containers/{cid}/start", json=host_config))
        assert record.read_bytes() == before, host_config
        assert not api.get(f"/containers/{cid}/json").json()["State"]["Running"]


def test_copy_resource(api, make):
    cid = make(["true"])
    # resolved inside the root: `..` stays there (tests/cli/test_docker_rules.py); a NUL cannot
    refused(api.post(f"/containers/{cid}/copy", json={"Resource": "etc\x00passwd"}), "Resource")
    assert api.post(f"/containers/{cid}/copy", json={"Resource": "/etc/hostname"}).status_code == 200


def test_import_tag_commit_build_pull_push(busybox_daemon, api, make):
    before = snapshot(busybox_daemon, api)
    layer = make_tar({"f": b"x"})
    # the spelling the issue found stored as ../../x:..
    refused(api.post("/images/create", params={"fromSrc": "-", "repo": "../../x", "tag": ".."}, content=layer),
            "Invalid repository name")
    for repo in BAD_REPOSITORIES:
        answer = api.post("/images/create", params={"fromSrc": "-", "repo": repo}, content=layer)
        refused(answer)
        refused(api.post("/images/busybox/tag", params={"repo": repo}))
    for tag in BAD_TAGS:
        refused(api.post("/images/create", params={"fromSrc": "-", "repo": "fine", "tag": tag}, content=layer))
        refused(api.post("/images/busybox/tag", params={"repo": "fine", "tag": tag}), "tag name")
    assert snapshot(busybox_daemon, api) == before
    cid = make(["true"])
    before = snapshot(busybox_daemon, api)
    for params in ({"repo": "../../x"}, {"repo": "fine", "tag": ".."}, {"repo": "x\x00"}):
        refused(api.post("/commit", params={"container": cid, **params}))
        assert snapshot(busybox_daemon, api) == before, params
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        data = b"FROM busybox\nRUN true\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    refused(api.post("/build", params={"t": "../../x:.."}, content=context.getvalue()))
    refused(api.post("/images/create", params={"fromImage": "../../x"}), "Invalid repository name")
    refused(api.post("/images/create", params={"fromImage": "busybox", "tag": ".."}), "tag name")
    refused(api.post("/images/..%2F..%2Fx/push", headers={"X-Registry-Auth": "e30="}))
    assert snapshot(busybox_daemon, api) == before
