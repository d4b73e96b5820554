"""``moorage drivers`` and ``moorage config check``, run as commands."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from conftest import MOORAGE, make_distribution, network_module
from pyroute2 import IPRoute


def moorage(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MOORAGE, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def drivers_json(*args: str, env: dict | None = None) -> dict:
    done = moorage("drivers", "--json", *args, env=env)
    assert done.returncode == 0, done.stderr
    return {f: {d["name"]: d for d in v["drivers"]} for f, v in json.loads(done.stdout)["families"].items()}


@pytest.mark.root  # it asserts that the bridge and the native driver are supported: root's
def test_lists_every_family_with_origin_support_options_and_selection(tmp_path):
    bridge = f"mtst{uuid.uuid4().hex[:8]}"
    config = tmp_path / "daemon.toml"
    config.write_text(f'[daemon]\nroot = "{tmp_path / "root"}"\n[graph]\ndriver = "vfs"\n'
                      f'[network.bridge]\nname = "{bridge}"\ntable = "t{bridge}"\n')
    found = drivers_json("--config", str(config))
    assert set(found) == {"graph", "exec", "network", "registry", "volume"}
    local = found["volume"]["local"]
    assert (local["entry_point"], local["supported"]) == ("local = moorage.drivers.volume.local", True)
    vfs, btrfs = found["graph"]["vfs"], found["graph"]["btrfs"]
    assert (vfs["distribution"], vfs["entry_point"]) == ("moorage", "vfs = moorage.drivers.graph.vfs")
    assert vfs["supported"] is True and vfs["selected"] is True
    assert not found["graph"]["overlay"]["selected"]  # the config names vfs
    # the driver's own probe, said of the configured root (not of the probe's scratch root)
    assert btrfs["supported"] is False and f"{tmp_path / 'root'}/graph/btrfs is not on a btrfs" in btrfs["reason"]
    options = {o["name"]: o for o in found["network"]["bridge"]["options"]}
    assert options["mtu"] == {"name": "mtu", "type": "int", "default": 1500, "required": False, "description": ""}
    assert options["bip"]["type"] == "str | None"
    assert found["network"]["bridge"]["supported"] is True
    # the probe built the bridge driver in namespaces of its own: nothing on the host
    with IPRoute() as ipr:
        assert not ipr.link_lookup(ifname=bridge)
    assert not list((tmp_path).glob(".moorage-probe-*"))
    # auto-selection: the first supported by priority
    assert [n for n, d in found["exec"].items() if d["selected"]] == ["native"]


def test_a_third_party_driver_is_listed_with_its_distribution(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    refusing = network_module("Refusing", "refusing", init="raise NotSupported('no uplink on this host')")
    make_distribution(site, "moorage-refusing-net", {"refusing_net": refusing}, {"refusing": "refusing_net"})
    found = drivers_json(env={"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))})
    info = found["network"]["refusing"]
    assert (info["distribution"], info["version"]) == ("moorage-refusing-net", "0.1")
    assert info["supported"] is False and info["reason"] == "no uplink on this host"


def test_text_output_marks_the_selection(tmp_path):
    done = moorage("drivers", "--no-probe")
    assert done.returncode == 0, done.stderr
    assert "overlay" in done.stdout and "native" in done.stdout and "not probed" in done.stdout


def test_config_check_accepts_a_good_file(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('[graph]\ndriver = "overlay"\n[registry]\ndefault = "http://127.0.0.1:5000"\n'
                    '[registry.v2]\nretries = 2\n[network.bridge]\nmtu = 1400\n')
    done = moorage("config", "check", str(good))
    assert done.returncode == 0 and done.stdout.strip() == f"{good}: ok", done.stderr


def test_config_check_names_every_unknown_key_and_driver(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[graph]\ndriver = "zfs"\npriority = ["vfs", "aufs"]\n'
                   '[network]\nmtu = 1400\n[network.bridge]\nmtuu = 1400\n'
                   '[network.macvlan2]\nparent = "eth0"\n[registry.v2]\nretries = "many"\n')
    done = moorage("config", "check", str(bad))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert any("line 2" in x and "unknown graph driver 'zfs'" in x and "installed: btrfs, overlay, vfs" in x
               for x in lines), lines
    assert any("unknown graph driver 'aufs'" in x for x in lines), lines
    assert any("line 5" in x and "unknown key network.mtu" in x for x in lines), lines
    assert any("unknown key network.bridge.mtuu" in x and "options of bridge: name, bip" in x for x in lines), lines
    assert any("unknown network driver 'macvlan2'" in x for x in lines), lines
    assert any("key 'retries'" in x for x in lines), lines
    assert len(lines) == 6, lines


def test_config_check_reports_what_the_daemon_refuses(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[daemon]\nhosts = ["unix:///x"]\nroots = "/x"\n')
    done = moorage("config", "check", str(bad))
    assert done.returncode == 1 and "line 3" in done.stderr and "daemon.roots: unknown key" in done.stderr
    done = moorage("config", "check", str(tmp_path / "missing.toml"))
    assert done.returncode == 1 and "does not exist" in done.stderr
