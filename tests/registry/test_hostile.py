"""Hostile registries: oversized documents, decompression bombs, endless lists and credential
fishing must fail cleanly, through the v2 client and through the daemon's real API.

A ``ScriptedServer`` plays the registry; another one on 127.0.0.2 (another host for the
client, still on loopback) plays the host that tries to collect credentials.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tarfile
import time
import uuid
import zlib

import pytest
import zstandard
from conftest import auth_header, stream_objects

from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.errors import InvalidParameter, NotFound, Unauthorized
from moorage.core.sdk.hookspecs.registry import AuthConfig
from moorage.core.testing.registry import DirStore, Progress, host_arch
from moorage.core.testing.registry.servers import Answer, ScriptedServer
from moorage.drivers.registry.v2 import V2Client, V2Options
from moorage.drivers.registry.v2.blobs import LayerTooLarge
from moorage.drivers.registry.v2.reference import Registry
from moorage.drivers.registry.v2.transport import MAX_DOCUMENT, CredentialPolicy, TooLarge

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
USER, PASSWORD = "mallory-target", "pa55-never-elsewhere"
ALICE = AuthConfig(USER, PASSWORD)
MIB = 1 << 20
BOMB_SIZE = 128 * MIB  # what the bomb layers unpack to
LAYER_CAP = 16 * MIB  # the cap the tests configure


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def bomb(size: int, compression: str) -> tuple[bytes, str]:
    """A layer tar of one file of ``size`` zero bytes, compressed (about 1/1000 of its size),
    and its real diff_id: a bomb an attacker would make, with correct digests."""
    info = tarfile.TarInfo("zeros")
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    plain = hashlib.sha256()
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS) if compression == "gzip" \
        else zstandard.ZstdCompressor(level=3).compressobj()
    out = [packer.compress(header)]
    plain.update(header)
    zeros = bytes(MIB)
    for _ in range(size // MIB):
        plain.update(zeros)
        out.append(packer.compress(zeros))
    trailer = bytes(1024)  # the end-of-archive blocks (size is a multiple of 512)
    plain.update(trailer)
    out += [packer.compress(trailer), packer.flush()]
    return b"".join(out), f"sha256:{plain.hexdigest()}"


def image(layer: bytes, diff_id: str) -> tuple[bytes, dict[str, bytes]]:
    """A schema2 manifest and its blobs (config and one layer)."""
    config = json.dumps({"architecture": host_arch(), "os": "linux", "config": {"Cmd": ["true"]},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                   "digest": digest_of(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                    "digest": digest_of(layer)}]}).encode()
    return manifest, {digest_of(config): config, digest_of(layer): layer}


def registry_script(repo: str, manifest, blobs: dict[str, bytes], extra=None):
    """Serves one image as ``repo:latest``; ``manifest`` is bytes or an ``Answer``."""
    def script(method, path, headers):
        if extra is not None and (answer := extra(method, path, headers)) is not None:
            return answer
        if path == "/v2/":
            return Answer(200, {"Content-Type": "application/json"}, b"{}")
        if path == f"/v2/{repo}/manifests/latest":
            if isinstance(manifest, Answer):
                return manifest
            return Answer(200, {"Content-Type": DOCKER_MANIFEST, "Docker-Content-Digest": digest_of(manifest)},
                          manifest)
        prefix = f"/v2/{repo}/blobs/"
        if path.startswith(prefix) and path[len(prefix):] in blobs:
            return Answer(200, {"Content-Type": "application/octet-stream"}, blobs[path[len(prefix):]])
        return None
    return script


def endless(total: int):
    """``total`` bytes of a JSON-looking document, 1 MiB at a time, never held whole."""
    chunk = b" " * MIB
    yield b'{"schemaVersion": 2, "padding": "'
    for _ in range(total // MIB):
        yield chunk


@pytest.fixture(scope="module")
def bombs():
    return {kind: bomb(BOMB_SIZE, kind) for kind in ("gzip", "zstd")}


@pytest.fixture
def servers():
    started: list[ScriptedServer] = []

    def make(script, address: str = "127.0.0.1") -> ScriptedServer:
        started.append(ScriptedServer(script, address))
        return started[-1]

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def client(tmp_path):
    home = tmp_path / f"client-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    options = V2Options(backoff=0.01, retries=1, max_layer_size=LAYER_CAP)
    return V2Client(DriverContext.standalone(V2Client, home, options))


def sent_to(server: ScriptedServer, path: str, timeout: float = 10) -> int:
    """The body bytes ``server`` managed to send for ``path`` (once its handler finished)."""
    deadline = time.monotonic() + timeout
    while path not in server.sent and time.monotonic() < deadline:
        time.sleep(0.05)
    return server.sent[path]


def credentials_seen(server: ScriptedServer) -> list[str]:
    """Every request line or header of ``server`` that carries the test's credentials."""
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    found = []
    for method, path, headers in server.requests:
        text = f"{method} {path} " + " ".join(f"{k}: {v}" for k, v in headers.items())
        if "authorization" in headers or PASSWORD in text or basic in text:
            found.append(text)
    return found


# -- through the client ---------------------------------------------------------------------
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "no-length"])
def test_a_100_mib_manifest_is_refused_without_reading_it(servers, client, tmp_path, declared):
    repo = "hostile/bigmanifest"
    answer = Answer(200, {"Content-Type": DOCKER_MANIFEST}, endless(100 * MIB),
                    length=100 * MIB + 32 if declared else None)
    server = servers(registry_script(repo, answer, {}))
    target = DirStore(tmp_path / "store")
    with pytest.raises(TooLarge, match="more than"):
        client.pull(f"{server.host}/{repo}", "latest", AuthConfig(), target, Progress())
    # the client stopped early: what got through is socket buffers, not the document
    assert sent_to(server, f"/v2/{repo}/manifests/latest") < 32 * MIB
    assert target.added == [] and target.tags == {}


def test_an_oversized_config_is_refused(servers, client, tmp_path):
    repo = "hostile/bigconfig"
    config = b'{"rootfs": {"diff_ids": []}, "pad": "' + b" " * (MAX_DOCUMENT + 10) + b'"}'
    layer = digest_of(b"layer")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
                           "config": {"mediaType": "x", "size": len(config), "digest": digest_of(config)},
                           "layers": [{"mediaType": "y", "size": 5, "digest": layer}]}).encode()
    server = servers(registry_script(repo, manifest, {digest_of(config): config}))
    with pytest.raises(TooLarge):
        client.pull(f"{server.host}/{repo}", "latest", AuthConfig(), DirStore(tmp_path / "s"), Progress())
    assert not any("/blobs/" in path for _, path, _ in server.requests)  # refused by its descriptor
    # a config that lies about its size is cut at the bound while it is read
    lying = manifest.replace(f'"size": {len(config)}'.encode(), b'"size": 100')
    server = servers(registry_script(repo, lying, {digest_of(config): config}))
    with pytest.raises(TooLarge):
        client.pull(f"{server.host}/{repo}", "latest", AuthConfig(), DirStore(tmp_path / "t"), Progress())


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_a_decompression_bomb_stops_at_the_cap_and_leaves_nothing(servers, client, tmp_path, bombs, kind):
    layer, diff_id = bombs[kind]
    assert len(layer) < 2 * MIB  # a bomb: small on the wire
    repo = f"hostile/{kind}bomb"
    manifest, blobs = image(layer, diff_id)
    server = servers(registry_script(repo, manifest, blobs))
    target = DirStore(tmp_path / "store")
    with pytest.raises(LayerTooLarge, match="max_layer_size"):
        client.pull(f"{server.host}/{repo}", "latest", AuthConfig(), target, Progress())
    assert target.added == [] and list(target.root.iterdir()) == []
    assert list(client.tmp.iterdir()) == []
    # the same image under a cap above its size is an ordinary image: the cap made the difference
    roomy_options = V2Options(retries=0, max_layer_size=2 * BOMB_SIZE)
    roomy = V2Client(DriverContext.standalone(V2Client, client.home, roomy_options))
    [top] = roomy.pull(f"{server.host}/{repo}", "latest", AuthConfig(), target, Progress())
    assert (target.root / top / "layer" / "zeros").stat().st_size == BOMB_SIZE


def test_tag_lists_and_catalogs_are_bounded(servers, client, tmp_path):
    many = json.dumps({"name": "x", "tags": [f"t{i}" for i in range(20_000)]}).encode()

    def extra(method, path, headers):
        if path == "/v2/hostile/manytags/tags/list":
            return Answer(200, {"Content-Type": "application/json"}, many)
        if path.startswith("/v2/hostile/endless/tags/list"):  # an empty page and a next link, forever
            n = int(path.rpartition("=")[2]) if "=" in path else 0
            return Answer(200, {"Link": f'</v2/hostile/endless/tags/list?last={n + 1}>; rel="next"'},
                          b'{"tags": []}')
        if path == "/v2/hostile/badtag/tags/list":
            return Answer(200, {}, json.dumps({"tags": ["../../x"]}).encode())
        if path.startswith("/v2/_catalog"):
            return Answer(200, {}, json.dumps({"repositories": [f"r/{i}" for i in range(20_000)]}).encode())
        return None

    server = servers(registry_script("none", b"{}", {}, extra))
    for repo in ("manytags", "endless"):
        with pytest.raises(TooLarge):
            client.pull(f"{server.host}/hostile/{repo}", None, AuthConfig(), DirStore(tmp_path / repo), Progress())
    with pytest.raises(InvalidParameter, match="invalid tag"):
        client.pull(f"{server.host}/hostile/badtag", None, AuthConfig(), DirStore(tmp_path / "bad"), Progress())
    assert sum(1 for _, path, _ in server.requests if "endless" in path) <= 101
    with pytest.raises(TooLarge):
        client.search(f"{server.host}/r", AuthConfig())


def realm_server(servers):
    """The other host: answers 401 with a Bearer realm of its own, and tokens to anyone."""
    def script(method, path, headers):
        if path.startswith("/token"):
            return Answer(200, {"Content-Type": "application/json"}, b'{"token": "from-the-other-host"}')
        realm = f"http://127.0.0.2:{other.port}/token"
        return Answer(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="other"'}, b"{}")

    other = servers(script, "127.0.0.2")
    return other


def basic_registry_script(other: ScriptedServer, mode: str):
    """A registry asking for Basic credentials, then sending the client to ``other``: by a
    redirect (``mode == "redirect"``), or by naming ``other`` as its token realm."""
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def script(method, path, headers):
        if mode == "realm":
            if headers.get("authorization") == "Bearer from-the-other-host":
                return Answer(404, {}, b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "no"}]}')
            realm = f"http://127.0.0.2:{other.port}/token"
            return Answer(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="x",scope="repository:a/b:pull"'},
                          b"{}")
        if headers.get("authorization") != basic:
            return Answer(401, {"WWW-Authenticate": 'Basic realm="hostile"'}, b"{}")
        return Answer(307, {"Location": f"http://127.0.0.2:{other.port}{path}"}, b"")

    return script


@pytest.mark.parametrize("mode", ["redirect", "realm"])
def test_another_host_never_gets_the_credentials(servers, client, tmp_path, mode):
    other = realm_server(servers)
    registry = servers(basic_registry_script(other, mode))
    # the redirect target's challenge is not answered; the realm's anonymous token gets a 404
    with pytest.raises(Unauthorized if mode == "redirect" else NotFound):
        client.pull(f"{registry.host}/a/b", "latest", ALICE, DirStore(tmp_path / "s"), Progress())
    assert other.requests, "the test must reach the other host"
    assert credentials_seen(other) == []
    if mode == "redirect":  # the registry itself did get them
        assert credentials_seen(registry)


def test_credential_policy():
    local = Registry("http://127.0.0.1:5000", "127.0.0.1:5000")
    policy = CredentialPolicy(local)
    assert policy.to_registry("http://127.0.0.1:5000/v2/x")
    assert not policy.to_registry("http://127.0.0.1:5001/v2/x")  # another origin
    assert policy.to_realm("http://127.0.0.1:5001/token")  # the registry's own host
    assert not policy.to_realm("http://127.0.0.2:5001/token")
    remote = Registry("https://registry.example.com", "registry.example.com")
    policy = CredentialPolicy(remote, token_realms=("auth.example.com",))
    assert policy.to_realm("https://auth.example.com/token")
    assert not policy.to_realm("http://auth.example.com/token")  # never over plain http
    assert not policy.to_realm("https://evil.example.net/token")
    assert not policy.to_registry("http://registry.example.com/v2/")  # a downgrade
    insecure = Registry("http://registry.lan:5000", "registry.lan:5000")
    assert CredentialPolicy(insecure, insecure=("registry.lan:5000",)).to_registry("http://registry.lan:5000/v2/")
    assert not CredentialPolicy(insecure).to_registry("http://registry.lan:5000/v2/")
    hub = Registry("https://registry-1.docker.io", "docker.io")
    assert CredentialPolicy(hub).to_realm("https://auth.docker.io/token")
    assert not CredentialPolicy(remote).to_realm("https://auth.docker.io/token")


# -- through the daemon's API -----------------------------------------------------------------
@pytest.fixture
def capped_daemon(daemon_factory):
    return daemon_factory('[registry]\ndefault = "http://127.0.0.1:1"\n'
                          f'[registry.v2]\nmax_layer_size = "{LAYER_CAP // MIB}m"\nretries = 1\nbackoff = 0.01\n')


def pull_error(daemon, name: str, auth: dict[str, str] | None = None) -> str:
    with daemon.client() as api:
        answer = api.post("/images/create", params={"fromImage": name, "tag": "latest"}, headers=auth or {})
        messages = stream_objects(answer.text) if answer.status_code == 200 else [{"error": answer.text}]
        errors = [m["error"] for m in messages if "error" in m]
        assert errors, messages
        assert api.get("/images/json", params={"all": 1}).json() == []
    for leftovers in (daemon.root / "registry" / "v2" / "tmp", daemon.root / "graph" / "_tmp"):
        assert not leftovers.exists() or os.listdir(leftovers) == []
    return errors[-1]


def test_api_pulls_fail_cleanly(capped_daemon, servers, bombs):
    big = Answer(200, {"Content-Type": DOCKER_MANIFEST}, endless(100 * MIB), length=None)
    server = servers(registry_script("hostile/big", big, {}))
    assert "more than" in pull_error(capped_daemon, f"{server.host}/hostile/big")
    for kind in ("gzip", "zstd"):
        manifest, blobs = image(*bombs[kind])
        server = servers(registry_script(f"hostile/{kind}", manifest, blobs))
        assert "max_layer_size" in pull_error(capped_daemon, f"{server.host}/hostile/{kind}")
    assert capped_daemon.proc.poll() is None


@pytest.mark.parametrize("mode", ["redirect", "realm"])
def test_api_pull_keeps_credentials_from_another_host(capped_daemon, servers, mode):
    other = realm_server(servers)
    registry = servers(basic_registry_script(other, mode))
    pull_error(capped_daemon, f"{registry.host}/a/b", auth_header(USER, PASSWORD))
    assert other.requests and credentials_seen(other) == []
    assert PASSWORD not in capped_daemon.log()
