"""The ``v2`` registry client: the family's contract suite, plus what is particular to v2."""

from __future__ import annotations

import logging

import pytest

from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.errors import InvalidParameter, Unauthorized
from moorage.core.sdk.hookspecs.registry import AuthConfig
from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.registry import (
    PASSWORD,
    USER,
    Progress,
    RegistryClientContract,
    RegistryFixtures,
    host_arch,
    oci_image,
)
from moorage.drivers.registry.v2 import V2Client, moorage_registry_register
from moorage.drivers.registry.v2.blobs import progress_text
from moorage.drivers.registry.v2.images import chain_ids, host_platform, select_manifest
from moorage.drivers.registry.v2.reference import DOCKER_HUB, Registry, parse_name, registry_from_url
from moorage.drivers.registry.v2.transport import parse_challenge


@pytest.fixture
def moorage_driver() -> DriverUnderTest:
    """v2, built by name, retrying quickly (the suite's proxies fail on purpose)."""
    return DriverUnderTest.from_toml("registry", "v2", "[registry.v2]\nbackoff = 0.01\nretries = 3\n")


class TestV2Contract(RegistryClientContract):
    """The whole registry contract."""


class TestV2Particulars(RegistryFixtures):
    """v2's own progress texts and options, on the contract's servers."""

    def test_push_statuses(self, registry, client_factory, local_busybox, token_registry):
        store, top_id = local_busybox
        client = client_factory()
        name = f"{registry.host}/library/busybox"
        progress = Progress()
        digests = client.push(name, None, {"latest": top_id}, AuthConfig(), store, progress)
        assert progress.messages[:2] == [{"status": f"The push refers to a repository [{name}] (len: 1)"},
                                         {"status": f"Pushing repository {name} (1 tags)"}]
        assert progress.messages[-1]["status"].startswith(f"latest: digest: {digests['latest']} size: ")
        pushing = [m for m in progress.messages if m["status"] == "Pushing"]
        assert pushing and pushing[-1]["progress"].endswith("(100%)")
        again = Progress()
        client.push(name, None, {"latest": top_id}, AuthConfig(), store, again)
        assert sum("already pushed, skipping" in s for s in again.statuses()) == 2
        # mounting shows where from
        alice = AuthConfig(USER, PASSWORD)
        client.push(f"{token_registry.host}/team/a", None, {"latest": top_id}, alice, store, Progress())
        mounted = Progress()
        client.push(f"{token_registry.host}/team/b", None, {"latest": top_id}, alice, store, mounted)
        assert mounted.statuses().count("Mounted from team/a") == 2

    def test_pull_statuses_for_stored_layers(self, registry, client_factory, store_factory, local_busybox):
        store, top_id = local_busybox
        client = client_factory()
        name = f"{registry.host}/library/busybox"
        client.push(name, None, {"latest": top_id}, AuthConfig(), store, Progress())
        target = store_factory()
        first = Progress()
        [top] = client.pull(name, "latest", AuthConfig(), target, first)
        assert {"status": "Pulling", "progress": "dependend layers", "id": top[:12]} in first.messages
        assert {"status": "Pulling", "progress": "image (latest) from " + name, "id": top[:12]} in first.messages
        second = Progress()
        client.pull(name, "latest", AuthConfig(), target, second)
        assert second.messages[-1] == {"status": "Already exists", "id": top[:12]}


    def test_zstd_layers(self, registry, client_factory, store_factory):
        desc = oci_image(registry, "zstd/box", host_arch(), "zstd")
        target = store_factory()
        name = f"{registry.host}/zstd/box"
        [top] = client_factory().pull(name, desc["digest"], AuthConfig(), target, Progress())
        assert target.read(top, "arch.txt") == host_arch().encode()

    def test_credentials_stay_out_of_logs_and_disk(self, registry_factory, token_server, client_factory,
                                                   store_factory, local_busybox, caplog):
        caplog.set_level(logging.DEBUG)
        store, top_id = local_busybox
        client = client_factory()
        alice = AuthConfig(USER, PASSWORD)
        for registry in (registry_factory("htpasswd"), registry_factory("token", token_server)):
            name = f"{registry.host}/secret/box"
            client.login(AuthConfig(USER, PASSWORD, server_address=registry.url))
            client.push(name, None, {"latest": top_id}, alice, store, Progress())
            client.pull(name, "latest", alice, store_factory(), Progress())
            with pytest.raises(Unauthorized) as refused:
                client.login(AuthConfig(USER, PASSWORD + "x", server_address=registry.url))
            assert PASSWORD not in str(refused.value) and PASSWORD not in repr(alice)
        assert caplog.records and PASSWORD not in caplog.text
        for path in client.home.rglob("*"):
            if path.is_file():
                assert PASSWORD.encode() not in path.read_bytes()


# -- units ----------------------------------------------------------------------------------
def test_hook_moorage_registry_register():
    assert moorage_registry_register() == [V2Client]
    # a built-in registers through its entry point, as a third-party client would
    pm = PluginManager()
    pm.load_entry_points()
    pm.collect_drivers()
    assert pm.families["registry"].get("v2") is V2Client


def test_progress_text_matches_docker_0_6():
    # "%8v/%v (%v)" of HumanSize (decimal units, four significant digits)
    assert progress_text(1024000, 10240000) == "1.024 MB/10.24 MB (10%)"
    assert progress_text(5000, 10000) == "    5 kB/10 kB (50%)"
    assert progress_text(512, None) == "     512/? (n/a)"  # Docker's raw byte count without a total


def test_names():
    hub = Registry(DOCKER_HUB, "docker.io")
    assert parse_name("busybox", hub).repository == "library/busybox"
    assert parse_name("user/app", hub).repository == "user/app"
    ref = parse_name("localhost:5000/library/busybox", hub)
    assert (ref.registry.url, ref.repository) == ("http://localhost:5000", "library/busybox")
    assert parse_name("registry.example.com/x", hub).registry.url == "https://registry.example.com"
    assert parse_name("registry.example.com/x", hub, ("registry.example.com",)).registry.url.startswith("http:")
    mirror = registry_from_url("http://127.0.0.1:5000/")
    ref = parse_name("busybox", mirror)
    assert (ref.registry.url, ref.repository, ref.fallbacks) == ("http://127.0.0.1:5000", "library/busybox",
                                                                 ("busybox",))
    for bad in ("http://x/y", "Upper/case", "a//b"):
        with pytest.raises(InvalidParameter):
            parse_name(bad, hub)


def test_auth_config_from_header_and_json():
    import base64
    import json

    raw = json.dumps({"username": "u", "password": "p+/?", "email": "e@x", "serveraddress": "h:5000"}).encode()
    for encode in (base64.urlsafe_b64encode, base64.b64encode):
        auth = AuthConfig.from_header(encode(raw).decode().rstrip("="))
        assert auth == AuthConfig("u", "p+/?", "e@x", "h:5000")
    assert AuthConfig.from_json({"Username": "u", "Password": "p"}) == AuthConfig("u", "p")
    for bad in (None, "", "!!!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{").decode()):
        assert AuthConfig.from_header(bad) == AuthConfig()
    assert "p+/?" not in repr(AuthConfig.from_json(json.loads(raw)))


def test_challenge_parsing():
    scheme, params = parse_challenge('Bearer realm="http://h/token",service="reg",scope="repository:a/b:pull,push"')
    assert scheme == "bearer" and params == {"realm": "http://h/token", "service": "reg",
                                             "scope": "repository:a/b:pull,push"}
    assert parse_challenge('Basic realm="test-registry"') == ("basic", {"realm": "test-registry"})


def test_ids_are_deterministic_and_config_bound():
    a = chain_ids(["sha256:1", "sha256:2"], "sha256:c1")
    assert a == chain_ids(["sha256:1", "sha256:2"], "sha256:c1")
    b = chain_ids(["sha256:1", "sha256:2"], "sha256:c2")
    assert a[0] == b[0] and a[1] != b[1]  # shared base, own top
    assert all(len(i) == 64 and int(i, 16) >= 0 for i in a)


def test_platform_selection():
    arch = host_arch()
    assert host_platform() == ("linux", arch)
    index = {"manifests": [
        {"digest": "sha256:v", "platform": {"os": "linux", "architecture": arch, "variant": "v8"}},
        {"digest": "sha256:o", "platform": {"os": "linux", "architecture": "s390x" if arch != "s390x" else "ppc64le"}},
        {"digest": "sha256:p", "platform": {"os": "linux", "architecture": arch}},
    ]}
    assert select_manifest(index)["digest"] == "sha256:p"
    with pytest.raises(InvalidParameter, match="no manifest for linux/mips"):
        select_manifest(index, ("linux", "mips"))
