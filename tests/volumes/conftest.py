"""A daemon for the volume tests of one module, and a second ``local`` driver on its root that
stands for a container holding a volume (mounting a named volume into a container is the
container side's work, not done yet): it writes the same state the daemon's driver reads."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest
from conftest import Daemon

from moorage.core.sdk.driver import DriverContext
from moorage.drivers.volume.local import LocalVolumeDriver


@pytest.fixture(scope="module")
def volume_daemon(tmp_path_factory):
    daemon = Daemon(tmp_path_factory.mktemp(f"volumes-{uuid.uuid4().hex[:6]}"))
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.dispose()


@pytest.fixture
def api(volume_daemon):
    """An API client; every volume is removed at the test's end (what holds one let go first)."""
    with volume_daemon.client() as client:
        yield client
        holder = LocalVolumeDriver(DriverContext.standalone(LocalVolumeDriver, volume_daemon.root / "volume" / "local",
                                                            root=volume_daemon.root))
        for volume in holder.list():
            for container, count in volume.mounts.items():
                for _ in range(count):
                    holder.unmount(volume.name, container)
        for row in client.get("/volumes").json()["Volumes"]:
            client.delete(f"/volumes/{row['Name']}")


@pytest.fixture
def holder(volume_daemon) -> LocalVolumeDriver:
    """The daemon's ``local`` driver state, reached from the test: ``holder.mount(name, cid)``."""
    return LocalVolumeDriver(DriverContext.standalone(LocalVolumeDriver, volume_daemon.root / "volume" / "local",
                                                      root=volume_daemon.root))


@pytest.fixture
def docker(volume_daemon):
    """Today's docker CLI against the daemon, at the version it negotiates (1.47), or at
    ``version``."""
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (bash bootstrap test installs one)")
    env = {**os.environ, "DOCKER_HOST": f"unix://{volume_daemon.sock}", "DOCKER_CONFIG": str(volume_daemon.base)}
    env.pop("DOCKER_API_VERSION", None)

    def run(*args, check=True, version=None):
        done = subprocess.run(["docker", *args], env={**env, "DOCKER_API_VERSION": version} if version else env,
                              capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)}: {done.returncode}\n{done.stdout}\n{done.stderr}")
        return done
    return run
