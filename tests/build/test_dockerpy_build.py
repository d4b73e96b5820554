"""The build docker-py 0.2.3's own test suite sends (its ``TestBuild``), through that client.

The ADD URL of the original test pointed at a file on the internet; here the same kind of file
(a gzipped tar, added without being unpacked) is served on 127.0.0.1.
"""

from __future__ import annotations

import io
import tarfile

import pytest
from conftest import import_docker_py

docker = import_docker_py()


@pytest.fixture
def client(docker_py_client):
    return docker_py_client


def silence_tar_gz() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("silence")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\0\0\0\0"))
    return buffer.getvalue()


def test_dockerpy_build(client, http_dir):
    root, base = http_dir
    (root / "silence.tar.gz").write_bytes(silence_tar_gz())
    script = io.BytesIO("\n".join([
        "FROM busybox",
        "MAINTAINER docker-py",
        "RUN mkdir -p /tmp/test",
        "EXPOSE 8080",
        f"ADD {base}/silence.tar.gz /tmp/silence.tar.gz",
    ]).encode("ascii"))
    img, logs = client.build(fileobj=script)
    assert img and logs
    assert logs.rstrip("\n").endswith(f"Successfully built {img}")
    container = client.create_container(img, "test -d /tmp/test")
    client.start(container["Id"])
    assert client.wait(container["Id"]) == 0
    # a URL source is added as downloaded, never unpacked
    container = client.create_container(img, "test -f /tmp/silence.tar.gz")
    client.start(container["Id"])
    assert client.wait(container["Id"]) == 0
    assert client.inspect_image(img)["author"] == "docker-py"


def test_dockerpy_build_with_tag_and_rm(client):
    script = io.BytesIO(b"FROM busybox\nRUN echo tagged > /t\n")
    img, logs = client.build(fileobj=script, tag="dockerpy-built", rm=True, nocache=True)
    assert img and "Removing intermediate container" in logs
    assert client.inspect_image("dockerpy-built")["id"].startswith(img)
    failed, logs = client.build(fileobj=io.BytesIO(b"FROM busybox\nRUN exit 3\n"))
    assert failed is None and "returned a non-zero code: 3" in logs
