"""Today's docker CLI negotiates API 1.47 through ``/_ping`` and works; forced to 1.6
(``DOCKER_API_VERSION=1.6``) it works as it did."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("docker") is None,
                                reason="no docker CLI (bash bootstrap test installs one)")


@pytest.fixture
def docker(busybox_daemon):
    base = {**os.environ, "DOCKER_HOST": f"unix://{busybox_daemon.sock}", "DOCKER_CONFIG": str(busybox_daemon.base)}

    def run(*args: str, stdin: str | None = None, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], env={**base, **(env or {})}, input=stdin, capture_output=True,
                              text=True, timeout=60)
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    return run


def test_version_negotiates_to_1_47(docker):
    out = docker("version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}").stdout.split()
    assert out[0] == "1.47"
    if not os.environ.get("DOCKER_API_VERSION"):
        assert out[1] == "1.47"


def test_forced_to_1_6_the_cli_still_works(docker):
    env = {"DOCKER_API_VERSION": "1.6"}
    assert docker("version", "--format", "{{.Client.APIVersion}}", env=env).stdout.strip() == "1.6"
    done = docker("run", "--rm", "busybox", "sh", "-c", "echo old; exit 4", check=False, env=env)
    assert done.returncode == 4 and done.stdout == "old\n"


def test_run_prints_output_and_returns_the_exit_code(docker):
    done = docker("run", "busybox", "sh", "-c", "echo hi; echo oops >&2; exit 3", check=False)
    assert done.returncode == 3
    assert done.stdout == "hi\n" and "oops" in done.stderr


def test_run_rm_interactive_and_detached(docker):
    assert docker("run", "--rm", "busybox", "echo", "gone").stdout == "gone\n"
    assert docker("run", "-i", "--rm", "busybox", "cat", stdin="through stdin\n").stdout == "through stdin\n"
    cid = docker("run", "-d", "--name", "cli-bg", "busybox", "sleep", "30").stdout.strip()
    assert len(cid) >= 12
    assert "cli-bg" in docker("ps").stdout
    assert docker("inspect", "-f", "{{.State.Running}} {{.Name}}", "cli-bg").stdout.strip() == "true /cli-bg"
    docker("stop", "-t", "1", "cli-bg")
    assert docker("inspect", "-f", "{{.State.Running}}", "cli-bg").stdout.strip() == "false"
    docker("rm", "cli-bg")
    assert "cli-bg" not in docker("ps", "-a").stdout


def test_images_tag_and_rmi(docker):
    docker("tag", "busybox", "cli-tagged:v1")
    listing = docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert "busybox:latest" in listing and "cli-tagged:v1" in listing
    docker("rmi", "cli-tagged:v1")
    assert "cli-tagged:v1" not in docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
