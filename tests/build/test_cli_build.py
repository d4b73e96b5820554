"""Today's docker CLI with the classic builder (``DOCKER_BUILDKIT=0 docker build``) against a test
daemon, once per exec driver: multi-stage, ``--build-arg``, ``--target``, ``.dockerignore`` and a
Dockerfile on stdin."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

DOCKER = "/usr/local/bin/docker" if os.path.exists("/usr/local/bin/docker") else shutil.which("docker")


@pytest.fixture
def docker(busybox_daemon):
    """``docker(*args)``: the CLI on the test daemon, classic builder; tags made are removed."""
    if DOCKER is None:
        pytest.skip("no docker CLI (bash bootstrap test installs one)")
    env = {**os.environ, "DOCKER_CONFIG": str(busybox_daemon.base), "DOCKER_BUILDKIT": "0"}
    env.pop("DOCKER_HOST", None)
    tags: list[str] = []

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        if args[0] == "build" and "-t" in args:
            tags.append(args[args.index("-t") + 1])
        done = subprocess.run([DOCKER, "-H", f"unix://{busybox_daemon.sock}", *args], env=env, input=stdin,
                              capture_output=True, text=True, timeout=120)
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    yield run
    for tag in tags:
        run("rmi", "-f", tag, check=False)


def test_dockerfile_on_stdin_with_env_key_value(docker):
    tag = f"cli-stdin-{uuid.uuid4().hex[:6]}"
    docker("build", "-t", tag, "-", stdin="FROM busybox\nENV B=1\n")
    assert docker("run", "--rm", tag, "sh", "-c", "echo $B").stdout == "1\n"


def test_multi_stage_build_args_target_and_dockerignore(docker, tmp_path):
    tag = f"cli-multi-{uuid.uuid4().hex[:6]}"
    (tmp_path / "Dockerfile").write_text(
        "ARG BASE=busybox\n"
        "FROM $BASE AS build\n"
        "ARG GREETING=default\n"
        "COPY . /src/\n"
        "RUN echo \"$GREETING\" > /greeting && ls /src > /listing\n"
        "FROM busybox AS final\n"
        "COPY --from=build /greeting /listing /out/\n"
        "CMD [\"cat\", \"/out/greeting\", \"/out/listing\"]\n"
        "FROM final AS broken\n"
        "RUN exit 9\n")
    (tmp_path / ".dockerignore").write_text("*.secret\nlogs\n!logs/keep\n")
    (tmp_path / "app.txt").write_text("app\n")
    (tmp_path / "key.secret").write_text("secret\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "keep").write_text("k\n")
    (tmp_path / "logs" / "drop").write_text("d\n")
    done = docker("build", "-t", tag, "--build-arg", "GREETING=hello", "--target", "final", str(tmp_path))
    assert "Successfully built" in done.stdout and "exit 9" not in done.stdout, done.stdout
    assert docker("run", "--rm", tag).stdout == "hello\nDockerfile\napp.txt\nlogs\n"
    failed = docker("build", "--target", "broken", str(tmp_path), check=False)
    assert failed.returncode != 0 and "returned a non-zero code: 9" in failed.stderr, failed.stderr
