"""docker-py 0.2.3, the client release that speaks API 1.6, drives moorage unchanged.

It predates Python 3.10, which removed the ``collections`` aliases of the ABCs its bundled
urllib3 uses; `import_docker_py` in tests/conftest.py restores them (in the client's world only).
"""

from __future__ import annotations

import pytest
from conftest import import_docker_py

docker = import_docker_py()


@pytest.fixture
def client(docker_py_client):
    return docker_py_client


def test_version_and_info(client):
    assert client.version()["Version"]
    before = client.info()
    assert before["Images"] >= 1
    client.create_container("busybox", ["/bin/true"])
    assert client.info()["Containers"] == before["Containers"] + 1


def test_full_lifecycle(client):
    container = client.create_container("busybox", ["/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"],
                                        name="dockerpy-life")
    cid = container["Id"]
    client.start(cid)
    assert client.wait(cid) == 3
    data = client.inspect_container(cid)
    assert data["ID"].startswith(cid) and data["Name"] == "/dockerpy-life"
    assert data["State"]["ExitCode"] == 3 and data["State"]["Running"] is False
    assert client.logs(cid) == "hello\noops\n"
    listed = client.containers(all=True)
    row = next(r for r in listed if r["Id"].startswith(cid))
    assert row["Status"] == "Exit 3" and row["Names"] == ["/dockerpy-life"]
    client.remove_container(cid)
    assert not any(r["Id"].startswith(cid) for r in client.containers(all=True))


def test_stop_kill_restart(client):
    cid = client.create_container("busybox", ["/bin/sh", "-c", "trap 'exit 5' TERM; while :; do sleep 0.1; done"])["Id"]
    client.start(cid)
    assert client.containers()[0]["Id"].startswith(cid)
    client.stop(cid, timeout=5)
    assert client.inspect_container(cid)["State"]["ExitCode"] == 5
    client.restart(cid, timeout=1)
    assert client.inspect_container(cid)["State"]["Running"] is True
    client.kill(cid, signal=9)
    assert client.wait(cid) == 137
    client.start(cid)
    client.kill(cid)
    assert client.inspect_container(cid)["State"]["Running"] is False


def test_diff_and_commit(client):
    cid = client.create_container("busybox", ["/bin/sh", "-c", "echo x > /made; rm /etc/group"])["Id"]
    client.start(cid)
    assert client.wait(cid) == 0
    changes = {c["Path"]: c["Kind"] for c in client.diff(cid)}
    assert changes["/made"] == 1 and changes["/etc/group"] == 2
    image = client.commit(cid, repository="dockerpy-commit", tag="v1", message="made by docker-py",
                          author="tests", conf={"Cmd": ["/bin/cat", "/made"]})
    info = client.inspect_image("dockerpy-commit:v1")
    assert info["id"].startswith(image["Id"]) and info["comment"] == "made by docker-py"
    child = client.create_container("dockerpy-commit:v1")["Id"]
    client.start(child)
    assert client.wait(child) == 0 and client.logs(child) == "x\n"
    client.remove_container(child)
    client.remove_image("dockerpy-commit:v1")


def test_binds_and_names(client, tmp_path):
    (tmp_path / "in").write_text("bound\n")
    cid = client.create_container("busybox", ["/bin/cat", "/mnt/in"], volumes=["/mnt"], name="dockerpy-binds")["Id"]
    client.start(cid, binds={str(tmp_path): "/mnt"})
    assert client.wait(cid) == 0
    assert client.logs("dockerpy-binds") == "bound\n"
    assert client.inspect_container("dockerpy-binds")["Volumes"] == {"/mnt": str(tmp_path)}
    with pytest.raises(docker.APIError):
        client.create_container("busybox", ["/bin/true"], name="dockerpy-binds")


def test_errors_reach_the_client(client):
    with pytest.raises(docker.APIError) as info:
        client.inspect_container("no-such-container")
    assert "404" in str(info.value)
    with pytest.raises(docker.APIError):
        client.create_container("no-such-image", ["/bin/true"])
