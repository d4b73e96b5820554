"""Disk full: the daemon's root on a small ext4 loop filesystem, filled (by a filler file next to
the root) so that a pull, an import and a commit run out of space. Each must fail with a plain
"no space left" error and leave the root as it was; the daemon keeps serving (and a container
create on a disk with no byte left fails as cleanly); once the fillers are deleted, the same
three requests succeed."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
import time
import uuid

import pytest
from conftest import CONTAINER_CONFIG, import_image, loop_filesystem, stream_objects

pytestmark = [
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="Debian's docker-registry package is needed"),
    pytest.mark.skipif(shutil.which("mkfs.ext4") is None, reason="mkfs.ext4 is needed (e2fsprogs)"),
]

FS_MIB = 192
#: bigger than what the filler leaves free, smaller than what deleting it frees
BIG_MIB = 24
LEFT_FREE_MIB = 6


@pytest.fixture
def small_fs(tmp_path):
    """A FS_MIB ext4 filesystem on a loop device (no reserved blocks: the daemon runs as root);
    unmounted and detached at the end, pass or fail."""
    with loop_filesystem(tmp_path, f"{FS_MIB}M", ["mkfs.ext4", "-q", "-F", "-m", "0"], "ext4") as mountpoint:
        yield mountpoint


@pytest.fixture
def full_daemon(daemon_factory, small_fs, registry, busybox_tar):
    """A daemon whose root is on ``small_fs``, with busybox imported. Its containers are removed
    and it is stopped before ``small_fs`` is unmounted (this fixture's finalizer runs first)."""
    d = daemon_factory(CONTAINER_CONFIG.format(graph="overlay", exec="native"),
                       flags=["--registry-mirror", registry.url], start=False)
    d.root = small_fs / "root"
    d.start()
    try:
        import_image(d, busybox_tar)
        yield d
    finally:
        d.dispose(mounts_below=small_fs)


def random_tar(mib: int) -> bytes:
    """A layer tar holding one incompressible file of ``mib`` MiB."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("big.bin")
        info.size, info.mode, info.mtime = mib << 20, 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(os.urandom(mib << 20)))
    return buf.getvalue()


def push_big_image(daemon_factory, registry, busybox_tar) -> str:
    """An image with a BIG_MIB incompressible layer, pushed to ``registry`` by a daemon whose
    root has room; returns its name."""
    source = daemon_factory(CONTAINER_CONFIG.format(graph="overlay", exec="native"),
                            flags=["--registry-mirror", registry.url])
    name = f"{registry.host}/diskfull/big{uuid.uuid4().hex[:6]}"
    with source.client(timeout=120) as api:
        created = api.post("/images/create", params={"fromSrc": "-", "repo": name, "tag": "v1"},
                           content=random_tar(BIG_MIB))
        assert created.status_code == 200 and "error" not in created.text, created.text
        pushed = api.post(f"/images/{name}/push", headers={"X-Registry-Auth": "e30="})
        assert not [m for m in stream_objects(pushed.text) if "error" in m], pushed.text
    source.stop()
    return name


def tree(root) -> set[str]:
    """Every path under ``root`` (what a failed request must not change)."""
    return {os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files}


#: Names of what is being deleted in the background (a removed layer, container or image)
DELETING = (".tmp-", "removing-", "deleting-")


def settled_tree(root, timeout: float = 15) -> set[str]:
    """``tree(root)`` once the background deletions of earlier requests are done."""
    deadline = time.monotonic() + timeout
    while True:
        paths = tree(root)
        busy = [p for p in paths if any(part.startswith(DELETING) for part in p.split(os.sep))]
        if not busy or time.monotonic() > deadline:
            return paths
        time.sleep(0.2)


def fill(mountpoint, leave_mib: int, name: str = "filler"):
    """A file of ``name`` in ``mountpoint`` taking all its free space but ``leave_mib`` MiB."""
    filler = mountpoint / name
    st = os.statvfs(mountpoint)
    free = st.f_bavail * st.f_frsize
    subprocess.run(["fallocate", "-l", str(free - (leave_mib << 20)), str(filler)], check=True)
    return filler


def error_of(response) -> str:
    """The error a request reported: the body of an HTTP error, or a JSON stream's error."""
    if response.status_code >= 400:
        return response.text
    errors = [m["error"] for m in stream_objects(response.text) if "error" in m]
    return errors[-1] if errors else ""


def assert_disk_full(response, root, before: set[str]) -> None:
    message = error_of(response)
    assert "no space left" in message.lower(), (response.status_code, response.text)
    assert "Traceback" not in message and "Errno" not in message, message
    after = settled_tree(root)
    assert after == before, (after - before, before - after)


def test_pull_import_commit_on_a_full_disk(daemon_factory, registry, busybox_tar, full_daemon, small_fs):
    d = full_daemon
    name = push_big_image(daemon_factory, registry, busybox_tar)
    big = random_tar(BIG_MIB)
    repo = f"diskfull{uuid.uuid4().hex[:6]}"
    with d.client(timeout=120) as api:
        # a container that wrote a big file, made while there was room
        writer = api.post("/containers/create", json={
            "Image": "busybox", "Cmd": ["dd", "if=/dev/urandom", "of=/big", "bs=1M", f"count={BIG_MIB}"]})
        assert writer.status_code == 201, writer.text
        writer_id = writer.json()["Id"]
        started = api.post(f"/containers/{writer_id}/start", json={})
        assert started.status_code == 204, started.text
        assert api.post(f"/containers/{writer_id}/wait").json()["StatusCode"] == 0

        filler = fill(small_fs, LEFT_FREE_MIB)
        images_before = api.get("/images/json", params={"all": 1}).json()

        before = settled_tree(d.root)
        assert_disk_full(api.post("/images/create", params={"fromImage": name, "tag": "v1"}), d.root, before)
        assert_disk_full(api.post("/images/create", params={"fromSrc": "-", "repo": repo}, content=big),
                         d.root, before)
        commit = api.post("/commit", params={"container": writer_id, "repo": repo, "tag": "c"})
        assert commit.status_code == 507, commit.text
        assert_disk_full(commit, d.root, before)
        assert api.get("/images/json", params={"all": 1}).json() == images_before

        # the daemon keeps serving
        assert api.get("/info").status_code == 200
        assert api.get("/containers/json", params={"all": 1}).status_code == 200
        small = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"]})
        assert small.status_code == 201, small.text
        small_id = small.json()["Id"]
        assert api.post(f"/containers/{small_id}/start", json={}).status_code == 204
        assert api.post(f"/containers/{small_id}/wait").json()["StatusCode"] == 0
        assert api.delete(f"/containers/{small_id}").status_code == 204

        # with no byte left, creating a container fails as cleanly, and reads still work
        before = settled_tree(d.root)
        last = fill(small_fs, 0, "filler-last")
        full = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"]})
        assert full.status_code == 507, full.text
        assert_disk_full(full, d.root, before)
        assert api.get("/info").status_code == 200
        assert api.get("/images/json").status_code == 200
        assert api.get("/containers/json", params={"all": 1}).status_code == 200
        last.unlink()

        # once space is freed, the same requests succeed
        filler.unlink()
        pulled = api.post("/images/create", params={"fromImage": name, "tag": "v1"})
        assert not error_of(pulled), pulled.text
        assert api.get(f"/images/{name}:v1/json").status_code == 200
        imported = api.post("/images/create", params={"fromSrc": "-", "repo": repo}, content=big)
        assert not error_of(imported), imported.text
        committed = api.post("/commit", params={"container": writer_id, "repo": repo, "tag": "c"})
        assert committed.status_code == 201, committed.text
        assert api.get(f"/images/{repo}:c/json").status_code == 200

    assert "Traceback" not in d.log(), d.log()
