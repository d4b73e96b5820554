"""Pull, push, search and auth through the daemon's API, against Debian's registry server on
127.0.0.1 (the `v2` driver's own behaviour is tested in tests/registry)."""

from __future__ import annotations

import json
import shutil
import warnings

import pytest
from conftest import CONTAINER_CONFIG, auth_header, import_docker_py, import_image, stream_objects

from moorage.core.testing.registry.servers import ISSUER, SERVICE, RegistryServer, TokenServer
from moorage.core.testing.registry.servers import PASSWORD as TOKEN_PASSWORD
from moorage.core.testing.registry.servers import USER as TOKEN_USER

pytestmark = pytest.mark.skipif(shutil.which("docker-registry") is None,
                                reason="Debian's docker-registry package is needed")
USER, PASSWORD = "moorage", "s3cret-pass"


@pytest.fixture
def htpasswd_registry(tmp_path):
    base = tmp_path / "secure"
    base.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    (base / "htpasswd").write_text(f"{USER}:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
    server = RegistryServer(base, f"auth:\n  htpasswd:\n    realm: test\n    path: {base / 'htpasswd'}\n")
    yield server
    server.stop()


@pytest.fixture
def token_registry(tmp_path):
    tokens = TokenServer(tmp_path)
    base = tmp_path / "token-registry"
    base.mkdir()
    server = RegistryServer(base, f"auth:\n  token:\n    realm: {tokens.realm}\n    service: {SERVICE}\n"
                                  f"    issuer: {ISSUER}\n    rootcertbundle: {tokens.cert}\n")
    yield server
    server.stop()
    tokens.stop()


def test_push_then_pull_into_another_daemon_and_run(daemon_factory, registry, busybox_tar):
    config = CONTAINER_CONFIG.format(graph="overlay", exec="native")
    source = daemon_factory(config)
    import_image(source, busybox_tar)
    name = f"{registry.host}/tests/busybox"
    with source.client() as api:
        assert api.post("/images/busybox/tag", params={"repo": name, "tag": "v1"}).status_code == 201
        pushed = api.post(f"/images/{name}/push", headers=auth_header())
        assert pushed.status_code == 200
        messages = stream_objects(pushed.text)
        assert not [m for m in messages if "error" in m], messages
        assert any("digest: sha256:" in m.get("status", "") for m in messages)
        local_id = api.get(f"/images/{name}:v1/json").json()["id"]

    target = daemon_factory(config, flags=["--registry-mirror", registry.url])
    with target.client() as api:
        pulled = api.post("/images/create", params={"fromImage": name, "tag": "v1"})
        messages = stream_objects(pulled.text)
        assert messages[0] == {"status": f"Pulling repository {name}"}
        assert not [m for m in messages if "error" in m], messages
        image = api.get(f"/images/{name}:v1/json").json()
        assert image["id"] != local_id  # pulled ids derive from content, not from the pusher's ids
        again = stream_objects(api.post("/images/create", params={"fromImage": name, "tag": "v1"}).text)
        assert api.get(f"/images/{name}:v1/json").json()["id"] == image["id"]
        assert not [m for m in again if m.get("status") == "Downloading"]
        # an unqualified name goes to the configured default registry
        short = stream_objects(api.post("/images/create", params={"fromImage": "tests/busybox", "tag": "v1"}).text)
        assert not [m for m in short if "error" in m], short
        cid = api.post("/containers/create", json={"Image": "tests/busybox:v1", "Cmd": ["/bin/echo", "pulled"]}).json()
        api.post(f"/containers/{cid['Id']}/start")
        assert api.post(f"/containers/{cid['Id']}/wait").json() == {"StatusCode": 0}
        missing = stream_objects(api.post("/images/create", params={"fromImage": name, "tag": "nope"}).text)
        assert "error" in missing[-1] and "nope" in missing[-1]["error"]
        results = api.get("/images/search", params={"term": "busy"}).json()
        assert any(r["name"] == "tests/busybox" for r in results)


def test_auth_endpoint(daemon_factory, htpasswd_registry):
    d = daemon_factory(flags=["--registry-mirror", htpasswd_registry.url])
    with d.client() as api:
        good = api.post("/auth", json={"username": USER, "password": PASSWORD, "email": "",
                                       "serveraddress": htpasswd_registry.url})
        assert good.status_code == 200 and good.json() == {"Status": "Login Succeeded"}
        bad = api.post("/auth", json={"username": USER, "password": "wrong", "serveraddress": htpasswd_registry.url})
        assert bad.status_code == 401 and bad.text == "Wrong login/password, please try again\n"
    assert PASSWORD not in d.log()


def test_hook_moorage_image_pulled(daemon_factory, registry, busybox_tar, tmp_path):
    from conftest import make_distribution

    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "moorage-pulled", {"pulledhook": '''
import json, os
from moorage.core.sdk.hookspecs import hookimpl
_root = []

@hookimpl
def moorage_daemon_configured(config):
    _root.append(str(config["daemon"]["root"]))

@hookimpl
def moorage_image_pulled(name, tag, image_id):
    with open(os.path.join(_root[0], "pulled.jsonl"), "a") as f:
        f.write(json.dumps([name, tag, image_id]) + "\\n")
'''}, {"pulledhook": "pulledhook"})
    config = CONTAINER_CONFIG.format(graph="vfs", exec="native")
    source = daemon_factory(config)
    import_image(source, busybox_tar)
    name = f"{registry.host}/hooks/bb"
    with source.client() as api:
        api.post("/images/busybox/tag", params={"repo": name, "tag": "t"})
        api.post(f"/images/{name}/push", headers=auth_header())
    target = daemon_factory(config, env={"PYTHONPATH": str(site)})
    with target.client() as api:
        api.post("/images/create", params={"fromImage": name, "tag": "t"})
        image_id = api.get(f"/images/{name}:t/json").json()["id"]
    calls = [json.loads(line) for line in (target.root / "pulled.jsonl").read_text().splitlines()]
    assert calls == [[name, "t", image_id]]


def test_docker_py_pull(daemon_factory, registry, busybox_tar):
    docker = import_docker_py()
    config = CONTAINER_CONFIG.format(graph="overlay", exec="native")
    source = daemon_factory(config)
    import_image(source, busybox_tar)
    name = f"{registry.host}/dockerpy/busybox"
    with source.client() as api:
        api.post("/images/busybox/tag", params={"repo": name, "tag": "latest"})
        assert api.post(f"/images/{name}/push", headers=auth_header()).status_code == 200
    target = daemon_factory(config)
    client = docker.Client(base_url=f"unix://{target.sock}", version="1.6", timeout=60)
    output = client.pull(name, tag="latest")
    assert "error" not in output
    assert any(row.get("Repository") == name for row in client.images())


def errors_of(messages: list[dict]) -> list[dict]:
    return [m for m in messages if "error" in m]


@pytest.mark.parametrize("mode", ["htpasswd", "token"])
def test_push_and_pull_with_credentials(daemon_factory, busybox_tar, mode, request):
    registry = request.getfixturevalue("htpasswd_registry" if mode == "htpasswd" else "token_registry")
    user, password = (USER, PASSWORD) if mode == "htpasswd" else (TOKEN_USER, TOKEN_PASSWORD)
    config = CONTAINER_CONFIG.format(graph="overlay", exec="native")
    d = daemon_factory(config)
    import_image(d, busybox_tar)
    name = f"{registry.host}/secure/busybox"
    with d.client() as api:
        api.post("/images/busybox/tag", params={"repo": name, "tag": "v1"})
        refused = stream_objects(api.post(f"/images/{name}/push", headers=auth_header()).text)
        assert errors_of(refused), refused  # anonymous pushes are refused
        pushed = stream_objects(api.post(f"/images/{name}/push", headers=auth_header(user, password)).text)
        assert not errors_of(pushed), pushed
        api.delete(f"/images/{name}:v1")
        pulled = stream_objects(api.post("/images/create", params={"fromImage": name, "tag": "v1"},
                                         headers=auth_header(user, password)).text)
        assert not errors_of(pulled), pulled
        assert api.get(f"/images/{name}:v1/json").status_code == 200
        wrong = stream_objects(api.post("/images/create", params={"fromImage": name, "tag": "v1"},
                                        headers=auth_header(user, "wrong")).text)
        assert errors_of(wrong)
    assert password not in d.log()


def test_from_image_busybox_uses_the_default_registry(daemon_factory, registry, busybox_tar):
    config = CONTAINER_CONFIG.format(graph="overlay", exec="native")
    source = daemon_factory(config)
    import_image(source, busybox_tar)
    with source.client() as api:
        api.post("/images/busybox/tag", params={"repo": f"{registry.host}/library/busybox", "tag": "latest"})
        assert not errors_of(stream_objects(api.post(f"/images/{registry.host}/library/busybox/push",
                                                     headers=auth_header()).text))
    target = daemon_factory(config, flags=["--registry-mirror", registry.url])
    with target.client() as api:
        pulled = stream_objects(api.post("/images/create", params={"fromImage": "busybox"}).text)
        assert not errors_of(pulled), pulled
        cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["/bin/echo", "ran"]}).json()["Id"]
        api.post(f"/containers/{cid}/start")
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 0}
        out = api.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1}).content
        assert out.endswith(b"ran\n")


def test_build_from_a_missing_image_pulls_it(daemon_factory, registry, busybox_tar):
    import io
    import tarfile

    config = CONTAINER_CONFIG.format(graph="overlay", exec="native")
    source = daemon_factory(config)
    import_image(source, busybox_tar)
    name = f"{registry.host}/build/base"
    with source.client() as api:
        api.post("/images/busybox/tag", params={"repo": name, "tag": "latest"})
        assert not errors_of(stream_objects(api.post(f"/images/{name}/push", headers=auth_header()).text))
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = f"FROM {name}\nRUN echo built > /built\nCMD [\"/bin/cat\", \"/built\"]\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    target = daemon_factory(config)
    with target.client(timeout=120) as api:
        output = api.post("/build", params={"t": "built-from-pull"}, content=context.getvalue()).text
        assert "Successfully built" in output, output
        assert f"Pulling repository {name}" in output
        cid = api.post("/containers/create", json={"Image": "built-from-pull"}).json()["Id"]
        api.post(f"/containers/{cid}/start")
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 0}
        assert api.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1}).content.endswith(b"built\n")
