"""Today's docker CLI: ``docker volume`` needs API 1.21 (``prune`` 1.25, ``prune -a`` 1.42): at the
1.47 it negotiates it works; forced to 1.6 it refuses by itself."""

from __future__ import annotations

import json

A = "a" * 64


def test_the_cli_forced_to_1_6_refuses_volumes_by_itself(docker):
    done = docker("volume", "ls", check=False, version="1.6")
    assert done.returncode != 0 and "requires API version 1.21" in done.stderr


def test_create_ls_inspect_rm(docker, api):
    assert docker("volume", "create", "--label", "app=web", "cli-vol").stdout.strip() == "cli-vol"
    assert docker("volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=4m",
                  "cli-tmp").stdout.strip() == "cli-tmp"
    assert docker("volume", "ls", "-q").stdout.split() == ["cli-tmp", "cli-vol"]
    assert docker("volume", "ls", "-q", "--filter", "label=app=web").stdout.split() == ["cli-vol"]
    inspected = json.loads(docker("volume", "inspect", "cli-vol", "cli-tmp").stdout)
    assert [(v["Name"], v["Driver"], v["Labels"], v["Options"]) for v in inspected] == [
        ("cli-vol", "local", {"app": "web"}, None),
        ("cli-tmp", "local", None, {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"})]
    assert docker("volume", "inspect", "-f", "{{.Scope}}", "cli-vol").stdout.strip() == "local"
    assert docker("volume", "rm", "cli-vol", "cli-tmp").stdout.split() == ["cli-vol", "cli-tmp"]
    assert docker("volume", "ls", "-q").stdout.strip() == ""


def test_errors_reach_the_cli(docker, holder, api):
    done = docker("volume", "create", "-o", "bogus=1", "cli-bad", check=False)
    assert done.returncode != 0 and 'invalid option: "bogus"' in done.stderr
    done = docker("volume", "rm", "cli-none", check=False)
    assert done.returncode != 0 and "no such volume" in done.stderr
    docker("volume", "create", "cli-held")
    holder.mount("cli-held", A)
    done = docker("volume", "rm", "-f", "cli-held", check=False)
    assert done.returncode != 0 and "in use" in done.stderr
    holder.unmount("cli-held", A)
    docker("volume", "rm", "cli-held")


def test_prune(docker, api):
    anonymous = docker("volume", "create").stdout.strip()
    docker("volume", "create", "cli-named")
    out = docker("volume", "prune", "-f").stdout
    assert anonymous in out and "cli-named" not in out
    assert "cli-named" in docker("volume", "prune", "-a", "-f").stdout
    assert docker("volume", "ls", "-q").stdout.strip() == ""
