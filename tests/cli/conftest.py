"""Today's docker CLI (28.x) against a real test daemon, once per exec driver: ``cli(*args)``
runs ``docker -H unix://SOCK ...`` and returns the finished process."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

DOCKER = "/usr/local/bin/docker" if os.path.exists("/usr/local/bin/docker") else shutil.which("docker")


class Cli:
    def __init__(self, daemon) -> None:
        self.daemon = daemon
        self.env = {**os.environ, "DOCKER_CONFIG": str(daemon.base)}
        self.env.pop("DOCKER_HOST", None)
        self.names: list[str] = []

    def __call__(self, *args: str, stdin: str | bytes | None = None, check: bool = True,
                 timeout: float = 90) -> subprocess.CompletedProcess:
        text = not isinstance(stdin, bytes)
        done = subprocess.run([DOCKER, "-H", f"unix://{self.daemon.sock}", *args], env=self.env, input=stdin,
                              capture_output=True, text=text, timeout=timeout)
        if check:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([DOCKER, "-H", f"unix://{self.daemon.sock}", *args], env=self.env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def name(self, what: str = "c") -> str:
        """A unique container name, removed (with its container) at the end of the test."""
        name = f"cli-{what}-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def cleanup(self) -> None:
        for name in self.names:
            self("rm", "-f", name, check=False)


@pytest.fixture
def cli(busybox_daemon):
    if DOCKER is None:
        pytest.skip("no docker CLI (bash bootstrap test installs one)")
    client = Cli(busybox_daemon)
    yield client
    client.cleanup()
