"""The registry family's contract suite, run against a real registry server.

Every test starts Debian's ``docker-registry`` (``/usr/bin/docker-registry``, distribution 2.8)
on 127.0.0.1 with a free port and storage in a temp dir, killed in the finalizer; auth tests
add htpasswd (bcrypt) or a token server. Images are seeded by the client's own push and by
hand-made OCI manifests and indexes. The image store is ``DirStore`` (layers as directories),
so the suite does not depend on moorage's image store.

Run it against an installed client by name (``pytest --pyargs moorage.core.testing
--moorage-driver registry=NAME [--moorage-driver-options FILE.toml]``), or from a client
package's own tests by subclassing ``RegistryClientContract`` and overriding ``moorage_driver``
(see ``moorage.core.testing.plugin``). ``client_factory(default="")`` builds a new client on a
fresh root through ``driver_factory``; ``default`` is the family's ``[registry] default``.

The clients should retry a few times with a short backoff (give those options in the
options file) (the retry tests go
through a proxy that fails on purpose). ``busybox_tar`` comes from moorage's pytest plugin.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import uuid
import warnings

import httpx
import pytest

from moorage.core.sdk.errors import NotFound, Unauthorized, Unavailable
from moorage.core.sdk.hookspecs.registry import AuthConfig, PulledLayer
from moorage.core.testing.registry.servers import (
    ISSUER,
    PASSWORD,
    SERVICE,
    USER,
    FlakyProxy,
    RegistryServer,
    TokenServer,
)
from moorage.core.testing.registry.store import DirStore, Progress, tar_bytes

__all__ = ["RegistryClientContract", "RegistryFixtures", "DirStore", "Progress", "tar_bytes", "RegistryServer",
           "TokenServer", "FlakyProxy", "USER", "PASSWORD", "host_arch", "oci_image"]

ANON = AuthConfig()
ALICE = AuthConfig(username=USER, password=PASSWORD)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def host_arch() -> str:
    import platform

    return _ARCHES.get(platform.machine(), platform.machine())


def push(client, store, image_id, name, tags=("latest",), auth=ANON) -> tuple[dict, Progress]:
    progress = Progress()
    digests = client.push(name, None, dict.fromkeys(tags, image_id), auth, store, progress)
    return digests, progress


def raw_blob(registry: RegistryServer, repo: str, data: bytes) -> dict:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    r = httpx.post(f"{registry.url}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202
    r = httpx.put(f"{r.headers['location']}&digest={digest}", content=data,
                  headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return {"digest": digest, "size": len(data)}


def raw_manifest(registry: RegistryServer, repo: str, ref: str, manifest: dict, media_type: str) -> dict:
    body = json.dumps(manifest).encode()
    r = httpx.put(f"{registry.url}/v2/{repo}/manifests/{ref}", content=body, headers={"Content-Type": media_type})
    assert r.status_code == 201, r.text
    return {"digest": f"sha256:{hashlib.sha256(body).hexdigest()}", "size": len(body), "mediaType": media_type}


def oci_image(registry: RegistryServer, repo: str, arch: str, compression: str) -> dict:
    """An OCI manifest (without mediaType, as umoci writes them) whose layer holds /arch.txt,
    compressed with ``compression``: ``""`` (a plain tar), ``"gzip"`` or ``"zstd"``."""
    layer = tar_bytes({"arch.txt": arch.encode(), "bin/marker": b"x"})
    diff_id = f"sha256:{hashlib.sha256(layer).hexdigest()}"
    if compression == "gzip":
        blob = gzip.compress(layer, mtime=0)
    elif compression == "zstd":
        import zstandard

        blob = zstandard.ZstdCompressor().compress(layer)
    else:
        blob = layer
    layer_desc = raw_blob(registry, repo, blob)
    config = {"architecture": arch, "os": "linux", "created": "2020-01-02T03:04:05Z",
              "config": {"Cmd": ["cat", "/arch.txt"], "Env": [f"ARCH={arch}"], "Labels": {"x": "y"}},
              "rootfs": {"type": "layers", "diff_ids": [diff_id]},
              "history": [{"created": "2020-01-02T03:04:05Z", "created_by": f"ADD arch.txt {arch}"}]}
    config_desc = raw_blob(registry, repo, json.dumps(config).encode())
    layer_type = "application/vnd.oci.image.layer.v1.tar" + (f"+{compression}" if compression else "")
    manifest = {"schemaVersion": 2, "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
                "layers": [{"mediaType": layer_type, **layer_desc}]}
    digest = f"sha256:{hashlib.sha256(json.dumps(manifest).encode()).hexdigest()}"
    desc = raw_manifest(registry, repo, digest, manifest, OCI_MANIFEST)
    return {**desc, "platform": {"os": "linux", "architecture": arch}}


def manifest_of(registry: RegistryServer, repo: str, tag: str) -> dict:
    return httpx.get(f"{registry.url}/v2/{repo}/manifests/{tag}", headers={"Accept": DOCKER_MANIFEST}).json()


def uploads(proxy: FlakyProxy, repo: str) -> int:
    """Blob uploads (PUT or PATCH of an upload session) seen by ``proxy`` for ``repo``."""
    key = f"/v2/{repo}/blobs/uploads/"
    return proxy.hits.get(("PUT", key), 0) + proxy.hits.get(("PATCH", key), 0)


def _blob_gets(proxy: FlakyProxy) -> int:
    return sum(n for (method, path), n in proxy.hits.items() if method == "GET" and "/blobs/sha256:" in path)


class RegistryFixtures:
    """The suite's servers and stores as fixtures, for a driver's own extra tests too,
    against ``moorage_driver``."""

    family = "registry"

    @pytest.fixture
    def client_factory(self, driver_factory, driver_root):
        """``client_factory(default="")`` -> a new client with its own home."""
        return lambda default="": driver_factory(driver_root / uuid.uuid4().hex[:8], default=default)

    @pytest.fixture
    def registry_factory(self, tmp_path):
        if shutil.which("docker-registry") is None:
            pytest.skip("Debian's docker-registry package is needed")
        started: list[RegistryServer] = []

        def make(auth: str = "none", token_server: TokenServer | None = None) -> RegistryServer:
            base = tmp_path / f"registry-{len(started)}"
            base.mkdir()
            auth_yaml = ""
            if auth == "htpasswd":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    import crypt
                htpasswd = base / "htpasswd"
                htpasswd.write_text(f"{USER}:{crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH))}\n")
                auth_yaml = f"auth:\n  htpasswd:\n    realm: test-registry\n    path: {htpasswd}\n"
            elif auth == "token":
                assert token_server is not None
                auth_yaml = (f"auth:\n  token:\n    realm: {token_server.realm}\n    service: {SERVICE}\n"
                             f"    issuer: {ISSUER}\n    rootcertbundle: {token_server.cert}\n")
            started.append(RegistryServer(base, auth_yaml))
            return started[-1]

        yield make
        for server in started:
            server.stop()

    @pytest.fixture
    def registry(self, registry_factory) -> RegistryServer:
        return registry_factory()

    @pytest.fixture
    def token_server(self, tmp_path):
        server = TokenServer(tmp_path)
        yield server
        server.stop()

    @pytest.fixture
    def token_registry(self, registry_factory, token_server) -> RegistryServer:
        return registry_factory("token", token_server)

    @pytest.fixture
    def proxy_factory(self):
        started: list[FlakyProxy] = []

        def make(upstream: str, policy=lambda method, path, hits: None) -> FlakyProxy:
            started.append(FlakyProxy(upstream, policy))
            return started[-1]

        yield make
        for proxy in started:
            proxy.stop()

    @pytest.fixture
    def store_factory(self, tmp_path):
        return lambda: DirStore(tmp_path / f"store-{uuid.uuid4().hex[:8]}")

    @pytest.fixture
    def local_busybox(self, store_factory, busybox_tar) -> tuple[DirStore, str]:
        """A local chain of two images: busybox, then a layer adding /hello.txt, with a config."""
        store = store_factory()
        base_id, top_id = uuid.uuid4().hex * 2, uuid.uuid4().hex * 2
        created = "2013-11-01T10:00:00Z"
        with open(busybox_tar, "rb") as tar:
            store.add_image(PulledLayer(base_id, None, {"id": base_id, "created": created, "container_config": {},
                                                        "architecture": "x86_64"}), tar)
        config = {"Cmd": ["/bin/sh", "-c", "cat /hello.txt"], "Env": ["PATH=/bin:/usr/bin", "GREETING=hi"],
                  "WorkingDir": "/tmp", "ExposedPorts": {"80/tcp": {}}, "User": "root"}
        top = {"id": top_id, "parent": base_id, "created": created, "author": "moorage tests",
               "container_config": {"Cmd": ["/bin/sh", "-c", "echo hi"]}, "config": config,
               "architecture": "x86_64"}
        layer = tar_bytes({"hello.txt": b"hello from moorage\n"})
        store.add_image(PulledLayer(top_id, base_id, top), io.BytesIO(layer))
        return store, top_id


class RegistryClientContract(RegistryFixtures):
    """What every registry client must do, against ``moorage_driver``."""

    # -- push and pull ----------------------------------------------------------------------
    def test_push_then_pull_round_trip(self, registry, client_factory, store_factory, local_busybox):
        store, top_id = local_busybox
        name = f"{registry.host}/library/busybox"
        digests, progress = push(client_factory(), store, top_id, name)
        assert progress.messages[0] == {"status": f"The push refers to a repository [{name}] (len: 1)"}
        head = httpx.head(f"{registry.url}/v2/library/busybox/manifests/latest", headers={"Accept": DOCKER_MANIFEST})
        assert digests == {"latest": head.headers["docker-content-digest"]}
        assert any(digests["latest"] in m.get("status", "") for m in progress.messages)

        target = store_factory()
        pulled = Progress()
        ids = client_factory().pull(name, "latest", ANON, target, pulled)
        assert len(ids) == 1 and len(ids[0]) == 64
        top = ids[0]
        assert target.tags == {(name, "latest"): top}
        assert target.read(top, "hello.txt") == b"hello from moorage\n"
        assert target.read(top, "bin/busybox") == store.read(top_id, "bin/busybox")
        chain = target.chain(top)
        assert len(chain) == 2 and chain[0].parent is None and chain[1].parent == chain[0].id
        data = target.image_json(top)
        assert data["config"]["Cmd"] == ["/bin/sh", "-c", "cat /hello.txt"]
        assert data["config"]["Env"] == ["PATH=/bin:/usr/bin", "GREETING=hi"]
        assert data["config"]["WorkingDir"] == "/tmp" and data["config"]["ExposedPorts"] == {"80/tcp": {}}
        assert data["config"]["Memory"] == 0 and data["config"]["Dns"] is None  # the full v1.6 shape
        assert data["author"] == "moorage tests" and data["architecture"] == "x86_64"
        assert data["parent"] == chain[0].id and data["created"] == "2013-11-01T10:00:00Z"
        # the §5.4 stream
        assert pulled.statuses()[0] == f"Pulling repository {name}"
        assert {"status": "Pulling", "progress": "fs layer", "id": chain[0].id[:12]} in pulled.messages
        assert {"status": "Download", "progress": "complete", "id": top[:12]} in pulled.messages
        downloading = [m for m in pulled.messages if m["status"] == "Downloading"]
        assert downloading and all(m["progress"].endswith("%)") for m in downloading)

    def test_pull_twice_same_ids_no_second_download(self, proxy_factory, registry, client_factory, store_factory,
                                                    local_busybox):
        store, top_id = local_busybox
        push(client_factory(), store, top_id, f"{registry.host}/library/busybox")
        proxy = proxy_factory(registry.host)
        name = f"{proxy.host}/library/busybox"
        client, target = client_factory(), store_factory()
        first = client.pull(name, "latest", ANON, target, Progress())
        added, blob_gets = list(target.added), _blob_gets(proxy)
        assert len(added) == 2 and blob_gets == 3  # two layers and the config
        second = Progress()
        assert client.pull(name, "latest", ANON, target, second) == first
        assert target.added == added and _blob_gets(proxy) == blob_gets + 1  # the config only
        assert "Downloading" not in second.statuses()
        # another store and another client derive the same ids from the content
        other = store_factory()
        assert client_factory().pull(f"{registry.host}/library/busybox", "latest", ANON, other, Progress()) == first
        assert sorted(other.added) == sorted(added)

    def test_pull_every_tag_and_missing_tag(self, registry, client_factory, store_factory, local_busybox):
        store, top_id = local_busybox
        name = f"{registry.host}/team/tools"
        push(client_factory(), store, top_id, name, tags=("1.0", "latest"))
        target = store_factory()
        ids = client_factory().pull(name, None, ANON, target, Progress())
        assert len(ids) == 2 and ids[0] == ids[1]
        assert set(target.tags) == {(name, "1.0"), (name, "latest")}
        with pytest.raises(NotFound, match="Tag nope not found in repository"):
            client_factory().pull(name, "nope", ANON, store_factory(), Progress())
        with pytest.raises(NotFound):
            client_factory().pull(f"{registry.host}/team/absent", None, ANON, store_factory(), Progress())

    def test_default_registry_for_unqualified_names(self, registry, client_factory, store_factory, local_busybox):
        store, top_id = local_busybox
        push(client_factory(), store, top_id, f"{registry.host}/library/busybox")
        push(client_factory(), store, top_id, f"{registry.host}/plain")
        client = client_factory(registry.url)
        target = store_factory()
        [top] = client.pull("busybox", "latest", ANON, target, Progress())
        assert target.tags == {("busybox", "latest"): top}
        # a single name that is not under library/ on a private default registry
        assert client.pull("plain", "latest", ANON, target, Progress()) == [top]
        assert client.search("busy", ANON) == [{"name": "library/busybox", "description": "", "star_count": 0,
                                                "is_official": False, "is_trusted": False}]

    def test_oci_index_picks_host_platform_and_plain_layers(self, registry, client_factory, store_factory):
        arch = host_arch()
        other_arch = "s390x" if arch != "s390x" else "amd64"
        repo = "multi/arch"
        ours = oci_image(registry, repo, arch, "")
        theirs = oci_image(registry, repo, other_arch, "gzip")
        attestation = {**theirs, "platform": {"os": "unknown", "architecture": "unknown"}}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [theirs, attestation, ours]}
        raw_manifest(registry, repo, "latest", index, OCI_INDEX)
        target = store_factory()
        name = f"{registry.host}/{repo}"
        [top] = client_factory().pull(name, "latest", ANON, target, Progress())
        assert target.read(top, "arch.txt") == arch.encode()
        data = target.image_json(top)
        assert data["config"]["Env"] == [f"ARCH={arch}"] and data["created"] == "2020-01-02T03:04:05Z"
        assert data["container_config"]["Cmd"] == ["/bin/sh", "-c", f"ADD arch.txt {arch}"]
        # the gzip variant, pulled by digest: no tag is set
        other = store_factory()
        [top2] = client_factory().pull(name, theirs["digest"], ANON, other, Progress())
        assert other.read(top2, "arch.txt") == other_arch.encode() and other.tags == {}

    def test_corrupt_blob_is_refused_and_nothing_partial_stored(self, registry, client_factory, store_factory,
                                                                local_busybox):
        store, top_id = local_busybox
        name = f"{registry.host}/library/broken"
        push(client_factory(), store, top_id, name)
        top_layer = registry.blob_path(manifest_of(registry, "library/broken", "latest")["layers"][-1]["digest"])
        data = bytearray(top_layer.read_bytes())
        data[len(data) // 2] ^= 0xFF
        top_layer.write_bytes(bytes(data))
        client = client_factory()
        target = store_factory()
        with pytest.raises(Unavailable):
            client.pull(name, "latest", ANON, target, Progress())
        assert target.complete()
        assert len(target.added) == 1  # the intact base layer, whole; never the corrupt top
        assert target.tags == {}
        assert [p for p in client.home.rglob("*") if p.is_file() and p.suffix == ".tar"] == []

    def test_push_skips_blobs_the_registry_has(self, proxy_factory, registry, client_factory, local_busybox):
        store, top_id = local_busybox
        client = client_factory()
        first, _ = push(client, store, top_id, f"{registry.host}/library/busybox")
        proxy = proxy_factory(registry.host)
        again, _ = push(client, store, top_id, f"{proxy.host}/library/busybox")
        assert again == first
        assert uploads(proxy, "library/busybox") == 0

    # -- auth -------------------------------------------------------------------------------
    def test_basic_auth(self, registry_factory, client_factory, store_factory, local_busybox):
        registry = registry_factory("htpasswd")
        store, top_id = local_busybox
        client = client_factory()
        assert client.login(AuthConfig(USER, PASSWORD, server_address=registry.url)) == "Login Succeeded"
        with pytest.raises(Unauthorized, match="Wrong login/password, please try again"):
            client.login(AuthConfig(USER, "wrong", server_address=registry.host))
        name = f"{registry.host}/private/box"
        with pytest.raises(Unauthorized):
            push(client, store, top_id, name)
        push(client, store, top_id, name, auth=ALICE)
        with pytest.raises(Unauthorized):
            client.pull(name, "latest", ANON, store_factory(), Progress())
        target = store_factory()
        [top] = client.pull(name, "latest", ALICE, target, Progress())
        assert target.read(top, "hello.txt") == b"hello from moorage\n"
        assert [r["name"] for r in client.search(f"{registry.host}/box", ALICE)] == [name]

    def test_token_auth_scope_growth_and_cross_repo_mount(self, proxy_factory, token_registry, token_server,
                                                          client_factory, store_factory, local_busybox):
        registry = token_registry
        store, top_id = local_busybox
        client = client_factory()
        assert client.login(AuthConfig(USER, PASSWORD, server_address=registry.url)) == "Login Succeeded"
        with pytest.raises(Unauthorized, match="Wrong login/password"):
            client.login(AuthConfig(USER, "nope", server_address=registry.url))
        token_server.requests.clear()
        proxy = proxy_factory(registry.host)  # counts the uploads
        push(client, store, top_id, f"{proxy.host}/team/a", auth=ALICE)
        scopes = [r["scopes"] for r in token_server.requests]
        assert ["repository:team/a:pull"] in scopes and ["repository:team/a:pull,push"] in scopes
        assert scopes.index(["repository:team/a:pull"]) < scopes.index(["repository:team/a:pull,push"])
        assert uploads(proxy, "team/a") == 3  # two layers and the config
        # the same layers pushed to another repository are mounted from the first, not uploaded
        push(client, store, top_id, f"{proxy.host}/team/b", auth=ALICE)
        assert uploads(proxy, "team/b") == 1  # the config blob only
        assert any("repository:team/a:pull" in r["scopes"] for r in token_server.requests)
        # anonymous pull gets a pull-only token; anonymous push is refused
        target = store_factory()
        [top] = client.pull(f"{registry.host}/team/b", "latest", ANON, target, Progress())
        assert target.read(top, "hello.txt") == b"hello from moorage\n"
        with pytest.raises(Unauthorized):
            push(client_factory(), store, top_id, f"{registry.host}/team/c")
        with pytest.raises(Unauthorized, match="Wrong login/password"):
            client.pull(f"{registry.host}/team/b", "latest", AuthConfig(USER, "nope"), store_factory(), Progress())
        names = [r["name"] for r in client.search(f"{registry.host}/team", ALICE)]
        assert names == [f"{registry.host}/team/a", f"{registry.host}/team/b"]

    # -- failures on the wire ---------------------------------------------------------------
    def test_retries_after_503_and_dropped_connections(self, proxy_factory, registry, client_factory, store_factory,
                                                       local_busybox):
        def policy(method, path, hits):
            if hits == 0:
                return "drop" if method == "GET" and "/blobs/sha256:" in path else "503"
            return None

        proxy = proxy_factory(registry.host, policy)
        store, top_id = local_busybox
        name = f"{proxy.host}/library/busybox"
        push(client_factory(), store, top_id, name)
        target = store_factory()
        [top] = client_factory().pull(name, "latest", ANON, target, Progress())
        assert target.read(top, "hello.txt") == b"hello from moorage\n"
        kinds = {(m, a) for m, _, a in proxy.failures}
        assert {("GET", "drop"), ("GET", "503"), ("PUT", "503"), ("POST", "503"), ("HEAD", "503")} <= kinds

    def test_registry_failing_mid_pull_then_resume(self, proxy_factory, registry, client_factory, store_factory,
                                                   local_busybox):
        store, top_id = local_busybox
        push(client_factory(), store, top_id, f"{registry.host}/library/busybox")
        top_digest = manifest_of(registry, "library/busybox", "latest")["layers"][-1]["digest"]
        proxy = proxy_factory(registry.host, lambda m, p, h: "drop" if p.endswith(top_digest) else None)
        target = store_factory()
        client = client_factory()
        with pytest.raises(Unavailable):
            client.pull(f"{proxy.host}/library/busybox", "latest", ANON, target, Progress())
        assert target.complete() and len(target.added) == 1 and target.tags == {}
        # the registry answers again: only the missing layer is downloaded
        [top] = client.pull(f"{registry.host}/library/busybox", "latest", ANON, target, Progress())
        assert len(target.added) == 2 and target.added[-1] == top

    def test_search_catalog_on_plain_registry(self, registry, client_factory, local_busybox):
        store, top_id = local_busybox
        client = client_factory()
        for repo in ("library/busybox", "tools/busy-worker", "other/thing"):
            push(client, store, top_id, f"{registry.host}/{repo}")
        names = [r["name"] for r in client.search(f"{registry.host}/busy", ANON)]
        assert names == [f"{registry.host}/library/busybox", f"{registry.host}/tools/busy-worker"]
        assert client.search(f"{registry.host}/zzz", ANON) == []

    def test_search_v1_api_where_the_registry_has_it(self, proxy_factory, registry, client_factory):
        found = {"query": "busy", "num_results": 2, "results": [
            {"name": "library/busybox", "description": "tiny", "star_count": 7, "is_official": True,
             "is_trusted": False},
            {"name": "someone/busy", "description": "", "star_count": 0, "is_official": False,
             "is_automated": True}]}
        proxy = proxy_factory(registry.host, lambda m, p, h: found if p == "/v1/search" else None)
        assert client_factory().search(f"{proxy.host}/busy", ANON) == [
            {"name": f"{proxy.host}/library/busybox", "description": "tiny", "star_count": 7, "is_official": True,
             "is_trusted": False},
            {"name": f"{proxy.host}/someone/busy", "description": "", "star_count": 0, "is_official": False,
             "is_trusted": True}]
        assert proxy.hits.get(("GET", "/v2/_catalog"), 0) == 0
