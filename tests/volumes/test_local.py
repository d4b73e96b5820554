"""The ``local`` volume driver's own options (Docker's): a tmpfs mounted at the first mount and
unmounted at the last, a bind of a host directory whose data is never deleted, and the option
checks. The family's contract runs on it too (``TestLocalContract``)."""

from __future__ import annotations

import os
import subprocess

import pytest

from moorage.core.kernel.plugins import installed_plugins
from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.mounts import mounts_below
from moorage.core.testing.driver import DriverUnderTest
from moorage.core.testing.volume import VolumeDriverContract
from moorage.drivers.volume.local import LocalVolumeDriver

A, B = "a" * 64, "b" * 64


@pytest.fixture
def moorage_driver() -> DriverUnderTest:
    return DriverUnderTest("volume", "local")


class TestLocalContract(VolumeDriverContract):
    pass


def test_hook_moorage_volume_register():
    pm = installed_plugins()
    assert pm.families["volume"].get("local") is LocalVolumeDriver


@pytest.fixture
def local(driver_factory) -> LocalVolumeDriver:
    return driver_factory()


def fstype(path) -> str:
    return subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--mountpoint", str(path)],
                          capture_output=True, text=True).stdout.strip()


def test_tmpfs_is_mounted_at_the_first_mount_and_gone_at_the_last(local):
    local.create("scratch", {"type": "tmpfs", "device": "tmpfs", "o": "size=4m"}, {})
    path = local.path("scratch")
    assert fstype(path) == ""
    assert local.mount("scratch", A) == path
    assert fstype(path) == "tmpfs"
    (path / "file").write_text("in memory")
    local.mount("scratch", B)
    local.unmount("scratch", A)
    assert (path / "file").read_text() == "in memory"  # B still holds it
    local.unmount("scratch", B)
    assert fstype(path) == "" and not (path / "file").exists()


def test_tmpfs_size_is_the_limit(local):
    local.create("small", {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}, {})
    path = local.mount("small", A)
    with pytest.raises(OSError):
        (path / "big").write_bytes(b"x" * (2 << 20))
    local.unmount("small", A)


def test_bind_shows_the_host_directory_and_remove_leaves_it(local, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep")
    local.create("bound", {"type": "none", "device": str(host), "o": "bind"}, {})
    path = local.mount("bound", A)
    assert (path / "precious").read_text() == "keep"
    (path / "new").write_text("through the volume")
    local.unmount("bound", A)
    assert mounts_below(local.path("bound")) == []
    local.remove("bound")
    assert sorted(os.listdir(host)) == ["new", "precious"]


def test_remove_never_deletes_through_a_mount_a_crash_left(local, tmp_path):
    # a daemon killed between the mount and the save of its count: mounted, counted by no one
    host = tmp_path / "host"
    host.mkdir()
    (host / "precious").write_text("keep")
    local.create("left", {"type": "none", "device": str(host), "o": "bind"}, {})
    subprocess.run(["mount", "--bind", str(host), str(local.path("left"))], check=True)
    local.remove("left")
    assert (host / "precious").read_text() == "keep"
    assert local.list() == []


def test_a_failed_mount_counts_nothing(local, tmp_path):
    local.create("broken", {"type": "none", "device": str(tmp_path / "missing"), "o": "bind"}, {})
    with pytest.raises(Exception, match="failed to mount local volume"):
        local.mount("broken", A)
    assert local.get("broken").mounts == {}
    local.remove("broken")


@pytest.mark.parametrize(("options", "message"), [
    ({"bogus": "1"}, 'invalid option: "bogus"'),
    ({"type": "tmpfs"}, 'missing required option: "device"'),
    ({"device": "tmpfs"}, 'missing required option: "type"'),
    ({"o": "size=1m", "type": "tmpfs"}, 'missing required option: "device"'),
    ({"size": "1g"}, "quota size requested but no quota support"),
    ({"size": "lots"}, "invalid size: 'lots'"),
])
def test_options_are_checked_as_docker_checks_them(local, options, message):
    with pytest.raises(InvalidParameter) as caught:
        local.create("opts", options, {})
    assert caught.value.message == message
    assert local.list() == [] and sorted(os.listdir(local.home)) == []


@pytest.mark.parametrize("name", ["x", "-dash", "a b", "a/b", "é1"])
def test_names_are_checked_as_docker_checks_them(local, name):
    with pytest.raises(InvalidParameter):
        local.create(name, {}, {})


def test_the_suite_runs_by_name(tmp_path):
    """What a volume driver's author runs: ``pytest --pyargs moorage.core.testing --moorage-driver volume=NAME``."""
    import sys

    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--pyargs",
                             "moorage.core.testing", "--moorage-driver", "volume=local"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "deselected" in summary and "failed" not in summary and "skipped" not in summary
