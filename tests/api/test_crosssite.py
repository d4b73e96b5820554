"""No cross-site use, tested from the attacker's side against the real daemon sockets.

A web page can make the browser send "simple" requests (no preflight): a POST with a
``text/plain``, form or multipart body, carrying the page's ``Origin``. With DNS rebinding the
page's own name points at 127.0.0.1 and the browser sends ``Host: attacker.example``. The three
POSTs that would give the page a privileged container (pull, create with ``Privileged`` in a
``text/plain`` body, start) must fail, and real clients must keep working over unix and TCP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import httpx
import pytest
from conftest import CONTAINER_CONFIG, busybox_daemon_in, exec_driver_unsupported, tracked_docker_py

if exec_driver_unsupported("native"):
    pytest.skip(f"native exec driver: {exec_driver_unsupported('native')}", allow_module_level=True)

ATTACKER = "http://attacker.example"
PRIVILEGED = '{"Image": "busybox", "Cmd": ["/bin/sh", "-c", "echo owned > /proc/sysrq-trigger"], "Privileged": true}'


@pytest.fixture(scope="module")
def target(tmp_path_factory, busybox_tar):
    """A daemon on a unix socket and loopback TCP, with busybox, one configured host name."""
    base = tmp_path_factory.mktemp(f"xsite-{uuid.uuid4().hex[:6]}")
    config = '[daemon]\napi_hostnames = ["moorage.internal"]\n'
    config += CONTAINER_CONFIG.format(graph="overlay", exec="native")
    with busybox_daemon_in(base, busybox_tar, config) as d:
        yield d


@pytest.fixture
def api(target):
    with target.client() as client:
        yield client


def all_containers(api) -> set[str]:
    return {row["Id"] for row in api.get("/containers/json", params={"all": 1}).json()}


def browser(target, transport: str, host: str | None = None) -> httpx.Client:
    """What a browser's request looks like from the daemon: the page's Origin, and the Host of
    the name it used (the daemon's address, or a rebound name)."""
    headers = {"Origin": ATTACKER}
    if transport == "tcp":
        client = httpx.Client(base_url=target.url, timeout=30, headers=headers)
    else:
        client = target.client(timeout=30)
        client.headers.update(headers)
    if host is not None:
        client.headers["Host"] = host
    return client


@pytest.mark.parametrize("transport", ["tcp", "unix"])
def test_the_three_simple_cross_site_posts_fail(target, api, transport):
    cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["sleep", "30"]}).json()["Id"]
    try:
        before = all_containers(api)
        with browser(target, transport) as page:
            pull = page.post("/images/create", params={"fromImage": "busybox", "tag": "latest"},
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, content=b"")
            create = page.post("/containers/create", headers={"Content-Type": "text/plain"}, content=PRIVILEGED)
            start = page.post(f"/containers/{cid}/start", headers={"Content-Type": "text/plain"},
                              content='{"Privileged": true}')
        assert (pull.status_code, create.status_code, start.status_code) == (403, 403, 403)
        assert "origin 'http://attacker.example' refused" in create.text
        assert all_containers(api) == before
        assert api.get(f"/containers/{cid}/json").json()["State"]["Running"] is False
    finally:
        api.delete(f"/containers/{cid}")


def test_every_method_and_the_websocket_refuse_a_foreign_origin(target, api):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    with browser(target, "tcp") as page:
        for method, path in (("GET", "/containers/json"), ("GET", "/version"), ("DELETE", "/images/busybox"),
                             ("OPTIONS", "/containers/create"), ("POST", "/build")):
            assert page.request(method, path).status_code == 403, (method, path)
    assert api.get("/images/busybox/json").status_code == 200
    with pytest.raises(InvalidStatus) as info, connect(f"ws://127.0.0.1:{target.port}/containers/x/attach/ws",
                                                      origin=ATTACKER, open_timeout=10):
        pass
    assert info.value.response.status_code == 403


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "text/plain; charset=utf-8"])
def test_a_json_body_under_another_content_type_is_refused(target, api, content_type):
    """Without an Origin too (a page whose browser leaves it out, a rebound same-origin page)."""
    before = all_containers(api)
    create = api.post("/containers/create", headers={"Content-Type": content_type}, content=PRIVILEGED)
    assert create.status_code == 400 and "application/json" in create.text
    assert all_containers(api) == before
    commit = api.post("/commit", params={"container": "nope"}, headers={"Content-Type": content_type},
                      content='{"Cmd": ["x"]}')
    assert commit.status_code == 400 and "application/json" in commit.text
    auth = api.post("/auth", headers={"Content-Type": content_type}, content='{"username": "x"}')
    assert auth.status_code == 400 and "application/json" in auth.text


def test_json_bodies_with_json_or_no_content_type_still_work(target, api):
    for headers in ({"Content-Type": "application/json"}, {"Content-Type": "application/json; charset=utf-8"}, {}):
        response = api.post("/containers/create", headers=headers,
                            content='{"Image": "busybox", "Cmd": ["true"]}')
        assert response.status_code == 201, (headers, response.text)
        api.delete(f"/containers/{response.json()['Id']}")
    # an empty body under the 0.6 CLI's "plain/text" label is no JSON body
    cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"]}).json()["Id"]
    try:
        assert api.post(f"/containers/{cid}/start", headers={"Content-Type": "plain/text"}).status_code == 204
    finally:
        api.post(f"/containers/{cid}/wait")
        api.delete(f"/containers/{cid}")


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:4243", "127.0.0.1.attacker.example",
                                  "localhost.attacker.example", "0x7f.0.0.1"])
def test_a_rebound_host_is_refused_on_tcp(target, api, host):
    before = all_containers(api)
    with httpx.Client(base_url=target.url, timeout=30, headers={"Host": host}) as page:
        listing = page.get("/containers/json")
        create = page.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"], "Privileged": True})
    assert (listing.status_code, create.status_code) == (403, 403)
    assert "DNS rebinding" in listing.text and "Id" not in listing.text
    assert all_containers(api) == before


@pytest.mark.parametrize("host", ["127.0.0.1:{port}", "localhost:{port}", "LOCALHOST", "[::1]:{port}", "10.1.2.3",
                                  "moorage.internal:{port}", "moorage.internal."])
def test_ip_literals_localhost_and_configured_names_are_served(target, host):
    with httpx.Client(base_url=target.url, timeout=30, headers={"Host": host.format(port=target.port)}) as client:
        assert client.get("/_ping").status_code == 200


def test_the_unix_socket_checks_no_host(target):
    with target.client() as client:
        assert client.get("/_ping", headers={"Host": "attacker.example"}).status_code == 200


def test_cors_allows_only_what_the_config_allows(daemon_factory):
    listed = daemon_factory(config='[daemon]\napi_enable_cors = true\napi_cors_origins = ["http://ui.example"]\n')
    with listed.client(tcp=True) as client:
        ok = client.get("/version", headers={"Origin": "http://ui.example"})
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "http://ui.example"
        preflight = client.options("/containers/create", headers={"Origin": "http://ui.example",
                                                                   "Access-Control-Request-Method": "POST"})
        assert preflight.status_code == 200
        assert client.get("/version", headers={"Origin": ATTACKER}).status_code == 403
    anyone = daemon_factory(config="[daemon]\napi_enable_cors = true\n")
    with anyone.client(tcp=True) as client:
        answer = client.get("/version", headers={"Origin": ATTACKER})
        assert answer.status_code == 200 and answer.headers["access-control-allow-origin"] == "*"


def test_docker_py_over_unix_and_tcp(target):
    for tcp in (False, True):
        with tracked_docker_py(target) as client:
            if tcp:
                client.base_url = target.url
            cid = client.create_container("busybox", ["/bin/sh", "-c", "echo hi > /f; echo done"])["Id"]
            client.start(cid, binds={str(target.base): "/host"})
            assert client.wait(cid) == 0
            assert client.logs(cid) == "done\n"
            image = client.commit(cid, repository=f"xsite-{uuid.uuid4().hex[:6]}", conf={"Cmd": ["cat", "/f"]})
            assert client.inspect_image(image["Id"])["config"]["Cmd"] == ["cat", "/f"]
            client.remove_image(image["Id"])


def test_docker_cli_over_unix_and_tcp(target):
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (bash bootstrap test installs one)")
    for host in (target.unix_url, f"tcp://127.0.0.1:{target.port}", f"tcp://localhost:{target.port}"):
        env = {**os.environ, "DOCKER_HOST": host, "DOCKER_CONFIG": str(target.base)}
        env.pop("DOCKER_TLS_VERIFY", None)

        def docker(*args, stdin=None, env=env, host=host):
            done = subprocess.run(["docker", *args], env=env, input=stdin, capture_output=True, text=True, timeout=180)
            assert done.returncode == 0, (host, args, done.stderr)
            return done.stdout

        name = f"xsite-{uuid.uuid4().hex[:6]}"
        assert docker("run", "-i", "--name", name, "busybox", "sh", "-c", "cat > /f; cat /f",
                      stdin="through\n") == "through\n"
        docker("commit", name, f"{name}:v1")
        assert docker("run", "--rm", f"{name}:v1", "cat", "/f") == "through\n"
        docker("rm", name)
        docker("rmi", f"{name}:v1")
