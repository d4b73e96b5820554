"""The confinement policy (``moorage.core.sdk.security``): capabilities, CapAdd/CapDrop, profiles."""

from __future__ import annotations

import json

import pytest

from moorage.core.kernel.config import load
from moorage.core.sdk.errors import ConfigError, InvalidParameter
from moorage.core.sdk.security import (
    CAPABILITIES,
    DEFAULT_CAPABILITIES,
    Confinement,
    SeccompProfile,
    SecurityPolicy,
    capability_mask,
    default_profile,
    tweak_capabilities,
)
from moorage.core.services import container_config


def test_docker_default_mask():
    assert capability_mask(DEFAULT_CAPABILITIES) == 0xA80425FB


@pytest.mark.parametrize(("add", "drop", "expected"), [
    ([], [], set(DEFAULT_CAPABILITIES)),
    (["cap_net_admin"], ["CHOWN"], set(DEFAULT_CAPABILITIES) - {"CHOWN"} | {"NET_ADMIN"}),
    (["ALL"], ["SYS_ADMIN"], set(CAPABILITIES) - {"SYS_ADMIN"}),
    (["KILL"], ["all"], {"KILL"}),
    (["NET_ADMIN"], ["NET_ADMIN"], set(DEFAULT_CAPABILITIES) | {"NET_ADMIN"}),  # added wins, as in Docker
])
def test_tweak_capabilities(add, drop, expected):
    assert tweak_capabilities(DEFAULT_CAPABILITIES, add, drop) == frozenset(expected)


def test_unknown_capability():
    with pytest.raises(InvalidParameter, match="CAP_FLY"):
        tweak_capabilities(DEFAULT_CAPABILITIES, ["CAP_FLY"])


def test_default_profile_follows_capabilities_and_architecture():
    blocked = {"keyctl", "add_key", "open_by_handle_at", "mount", "unshare", "init_module", "bpf", "kexec_load"}
    default = default_profile().resolve(DEFAULT_CAPABILITIES, machine="x86_64", kernel=(6, 1))
    allowed = {n for r in default.rules if r.action == "SCMP_ACT_ALLOW" and not r.args for n in r.names}
    assert not blocked & allowed and {"read", "execve", "arch_prctl", "ptrace"} <= allowed
    assert default.default_action == "SCMP_ACT_ERRNO" and default.default_errno == 1
    assert default.architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")
    clone = [r for r in default.rules if r.names == ("clone",)]
    assert [(a.index, a.value, a.op) for a in clone[0].args] == [(0, 0x7E020000, "SCMP_CMP_MASKED_EQ")]
    admin = default_profile().resolve({*DEFAULT_CAPABILITIES, "SYS_ADMIN"}, machine="x86_64", kernel=(6, 1))
    admin_allowed = {n for r in admin.rules if r.action == "SCMP_ACT_ALLOW" and not r.args for n in r.names}
    assert {"mount", "unshare", "clone"} <= admin_allowed
    old = default_profile().resolve(DEFAULT_CAPABILITIES, machine="x86_64", kernel=(4, 4))
    assert "ptrace" not in {n for r in old.rules for n in r.names}


def test_filter_json_round_trip():
    f = Confinement().seccomp_filter()
    assert type(f).from_json(json.loads(json.dumps(f.to_json()))) == f


@pytest.mark.parametrize(("data", "message"), [
    ([], "JSON object"),
    ({"defaultAction": "SCMP_ACT_NOPE", "syscalls": []}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "x"}]}, "unknown action"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read; rm"], "action": "SCMP_ACT_ALLOW"}]}, "names"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]},
     "argument"),
])
def test_bad_profiles_are_refused(data, message):
    with pytest.raises(ConfigError, match=message):
        SeccompProfile(data, "test.json")


def test_policy_from_the_config_file(tmp_path):
    path = tmp_path / "daemon.toml"
    path.write_text('[security]\ncapabilities = ["CAP_CHOWN"]\nseccomp_profile = "unconfined"\n')
    policy = SecurityPolicy(**load(path).security.model_dump())
    assert policy.default.capabilities == {"CHOWN"} and policy.default.seccomp is None
    assert policy.for_container(["KILL"], None).capabilities == {"CHOWN", "KILL"}
    path.write_text('[security]\nseccomp_profile = "/nonexistent/profile.json"\n')
    with pytest.raises(ConfigError, match="nonexistent"):
        SecurityPolicy(**load(path).security.model_dump())
    path.write_text('[security]\nmasked_paths = ["/etc/shadow"]\n')
    with pytest.raises(ConfigError, match="/etc/shadow"):
        SecurityPolicy(**load(path).security.model_dump())
    path.write_text('[security]\nno_such_key = 1\n')
    with pytest.raises(ConfigError, match="no_such_key"):
        load(path)


def test_host_config_cap_fields():
    host = container_config.normalize_host_config({"capadd": ["NET_ADMIN"], "CapDrop": ["ALL"]})
    assert host.cap_add == ["NET_ADMIN"] and host.cap_drop == ["ALL"]
    with pytest.raises(InvalidParameter, match="CapAdd"):
        container_config.normalize_host_config({"CapAdd": "NET_ADMIN"})
    with pytest.raises(InvalidParameter, match="SYS_FLY"):
        container_config.normalize_host_config({"CapDrop": ["SYS_FLY"]})


@pytest.mark.parametrize("source", ["/", "//", "/./", "///", "/../", "/.//."])
def test_bind_source_root_in_any_spelling(source):
    # "/../" is refused earlier, for its "..", by the path rule every request path meets
    with pytest.raises(InvalidParameter, match="can't be '/'|must not contain '..'"):
        container_config.parse_bind(f"{source}:/host")
