"""A daemon killed in the middle of a container's removal: after the restart the removal
happened fully (the container is gone and its name free) or not at all (the container is there
under its own name). bench/soak.py found a forced removal in flight at a SIGKILL that had
dropped the name but not the container: the restarted daemon listed it under a random name,
a container no answered request made.

The kill is played in process, at a chosen step of ``ContainerService.remove``: the step raises
``Killed`` (a BaseException nothing there catches), and a new kernel starts on the same root,
as a restarted daemon does. No container runs, but the kernel starts with an exec driver, and both need root."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from moorage.core.kernel.config import load
from moorage.core.kernel.kernel import Kernel
from moorage.core.services import containers as containers_module


class Killed(BaseException):
    """The daemon died here."""


def started_kernel(root: Path) -> Kernel:
    config = load(None, {"daemon.root": str(root), "daemon.pidfile": None, "graph.driver": "vfs",
                         "network.driver": "none"})
    kernel = Kernel(config)
    kernel.start()
    return kernel


def tiny_image_tar() -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    buf.seek(0)
    return buf


@pytest.mark.root
@pytest.mark.parametrize("step", ["rename", "fsync"])
def test_a_removal_killed_midway_happened_fully_or_not_at_all(tmp_path, monkeypatch, step):
    """``rename``: killed as the container's directory was about to be renamed away;
    ``fsync``: killed right after that rename, before the directory was synced."""
    root = tmp_path / "root"
    kernel = started_kernel(root)
    try:
        service = kernel.services.containers
        kernel.services.images.import_tar(tiny_image_tar(), "-", repo="tiny")
        container, _ = service.create({"Image": "tiny", "Cmd": ["/hello"]}, name="victim")
        directory = container.directory
        real_rename, real_fsync = os.rename, containers_module.fsync_dir

        def rename(src, dst, *args, **kwargs):
            if step == "rename" and Path(src) == directory:
                raise Killed
            return real_rename(src, dst, *args, **kwargs)

        def fsync_dir(path):
            if step == "fsync" and Path(path) == service.dir and not directory.exists():
                raise Killed
            return real_fsync(path)

        monkeypatch.setattr(containers_module.os, "rename", rename)
        monkeypatch.setattr(containers_module, "fsync_dir", fsync_dir)
        with pytest.raises(Killed):
            service.remove("victim")
        monkeypatch.undo()
    finally:
        kernel.shutdown()

    restarted = started_kernel(root)
    try:
        service = restarted.services.containers
        listed = {c.id: c.name for c in service.all()}
        if container.id in listed:  # not at all: there, under its own name, and it can be removed
            assert listed == {container.id: "/victim"}
            service.remove("victim")
        assert service.all() == [], {c.id: c.name for c in service.all()}
        # fully: the name is free again
        again, _ = service.create({"Image": "tiny", "Cmd": ["/hello"]}, name="victim")
        assert again.name == "/victim"
    finally:
        restarted.shutdown()
