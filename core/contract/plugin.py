"""The pytest plugin moorage registers under ``pytest11``: shared fixtures for contract suites."""

from __future__ import annotations

import pytest

from moorage.core.contract.rootfs import busybox_available, make_busybox_rootfs


@pytest.fixture(scope="session")
def busybox_rootfs(tmp_path_factory):
    """A read-only-by-convention busybox root filesystem (a directory) shared by a session.
    Tests that write into a rootfs must copy it first."""
    if not busybox_available():
        pytest.skip("a static busybox is needed (Debian package busybox-static)")
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox") / "rootfs")


@pytest.fixture(scope="session")
def busybox_tar(busybox_rootfs, tmp_path_factory):
    """The busybox rootfs as an uncompressed tar file (an importable image)."""
    from moorage.core.contract.rootfs import tar_directory

    return tar_directory(busybox_rootfs, tmp_path_factory.mktemp("busybox-tar") / "busybox.tar")
