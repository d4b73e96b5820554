"""What only the overlay driver does: mounts, whiteouts in the upper dir, deep chains."""

from __future__ import annotations

import io
import os
import stat
import threading

import pytest

from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.errors import DriverError
from moorage.core.sdk.hookspecs.graph import Change, ChangeKind
from moorage.core.testing.graph import layer_tar, mounts_below, unmount_below
from moorage.drivers.graph.overlay import OverlayDriver

#: every test here mounts overlayfs
pytestmark = pytest.mark.root


@pytest.fixture
def home(tmp_path):
    # a long home path: deep chains then need the short relative lower dir names
    path = tmp_path / ("long-directory-name-" * 4) / "overlay"
    path.mkdir(parents=True)
    yield path
    unmount_below(tmp_path)


@pytest.fixture
def driver(home):
    d = OverlayDriver(DriverContext.standalone(OverlayDriver, home))
    yield d
    d.cleanup()


def test_base_layer_is_not_mounted(driver, home):
    driver.create("base", None)
    path = driver.get("base")
    assert path == home / "base" / "diff"
    assert mounts_below(home) == []
    driver.put("base")


def test_child_is_mounted_while_held(driver, home):
    driver.create("base", None)
    driver.create("child", "base")
    path = driver.get("child")
    driver.get("child")
    assert mounts_below(home) == [str(path)]
    driver.put("child")
    assert os.path.ismount(path)
    driver.put("child")
    driver.reaper.drain()  # the unmount (and the kernel's syncfs) happens in the reaper's thread
    assert mounts_below(home) == []


def test_a_get_before_the_background_unmount_keeps_the_mount(driver, home):
    driver.create("base", None)
    driver.create("child", "base")
    release = threading.Event()
    driver.reaper.run(release.wait)  # holds the reaper back
    path = driver.get("child")
    (path / "kept").write_text("k")
    driver.put("child")  # the unmount is queued behind the held job
    assert driver.get("child") == path
    release.set()
    driver.reaper.drain()
    assert os.path.ismount(path) and (path / "kept").read_text() == "k"
    driver.put("child")
    driver.reaper.drain()
    assert mounts_below(home) == []


def test_removing_a_mounted_layer_leaves_the_unmount_to_the_reaper(driver, home):
    driver.create("base", None)
    driver.create("child", "base")
    release = threading.Event()
    driver.reaper.run(release.wait)
    driver.get("child")
    driver.remove("child")
    assert not driver.exists("child")
    driver.create("child", "base")  # the id is free at once, while the old mount still exists
    assert [p for p in mounts_below(home) if ".tmp-child-" in p]
    release.set()
    driver.reaper.drain()
    assert mounts_below(home) == [] and [p.name for p in home.iterdir() if p.name.startswith(".tmp-")] == []


def test_a_removal_cut_short_by_a_crash_is_finished_at_the_next_start(home):
    first = OverlayDriver(DriverContext.standalone(OverlayDriver, home))
    first.create("base", None)
    first.create("child", "base")
    first.reaper.run(threading.Event().wait, 0.5)  # the "daemon dies" before the reaper's turn
    path = first.get("child")
    (path / "data").write_text("d")
    first.remove("child")
    second = OverlayDriver(DriverContext.standalone(OverlayDriver, home))
    assert mounts_below(home) == []
    assert [p.name for p in home.iterdir() if p.name.startswith(".tmp-")] == []
    assert second.exists("base") and not second.exists("child")
    first.reaper.drain()  # its late turn finds nothing left to do


def test_creating_a_child_copies_nothing(driver, home):
    driver.create("base", None)
    (home / "base" / "diff" / "big").write_bytes(b"x" * (1 << 20))
    driver.create("child", "base")
    assert os.listdir(home / "child" / "diff") == []


def test_deleting_in_the_mount_writes_a_whiteout(driver, home):
    driver.create("base", None)
    (home / "base" / "diff" / "etc").mkdir()
    (home / "base" / "diff" / "etc" / "hosts").write_text("h")
    driver.create("child", "base")
    path = driver.get("child")
    (path / "etc" / "hosts").unlink()
    driver.put("child")
    st = os.lstat(home / "child" / "diff" / "etc" / "hosts")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert driver.changes("child", "base") == [Change("/etc", ChangeKind.MODIFIED),
                                               Change("/etc/hosts", ChangeKind.DELETED)]


def test_apply_diff_writes_overlay_whiteouts_into_the_upper_dir(driver, home):
    driver.create("base", None)
    (home / "base" / "diff" / "d").mkdir()
    (home / "base" / "diff" / "d" / "old").write_text("o")
    (home / "base" / "diff" / "gone").write_text("g")
    driver.create("layer", "base")
    driver.apply_diff("layer", "base", layer_tar(("d/", "dir", None), ("d/.wh..wh..opq", "file", ""),
                                                 ("d/new", "file", "n"), (".wh.gone", "file", "")))
    upper = home / "layer" / "diff"
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    assert os.lstat(upper / "gone").st_rdev == 0 and stat.S_ISCHR(os.lstat(upper / "gone").st_mode)
    path = driver.get("layer")
    try:
        assert sorted(os.listdir(path)) == ["d"] and os.listdir(path / "d") == ["new"]
    finally:
        driver.put("layer")


def test_apply_diff_refuses_a_mounted_layer(driver):
    driver.create("base", None)
    driver.create("child", "base")
    driver.get("child")
    with pytest.raises(DriverError):
        driver.apply_diff("child", "base", layer_tar(("f", "file", "x")))
    driver.put("child")


def test_diff_reads_only_the_upper_dir(driver, home):
    driver.create("base", None)
    for n in range(200):
        (home / "base" / "diff" / f"file{n}").write_text(str(n))
    driver.create("child", "base")
    (home / "child" / "diff" / "only").write_text("x")
    import tarfile
    names = tarfile.open(fileobj=io.BytesIO(b"".join(driver.diff("child", "base")))).getnames()
    assert names == ["only"]
    assert driver.diff_size("child", "base") == 1


@pytest.mark.parametrize("depth", [110, 260])
def test_deep_chains_mount_and_flatten(driver, home, depth):
    driver.create("l0", None)
    for n in range(1, depth):
        driver.create(f"l{n}", f"l{n - 1}")
        (home / f"l{n}" / "diff" / f"f{n}").write_text(str(n))
    os.mknod(home / f"l{depth - 1}" / "diff" / "f1", stat.S_IFCHR | 0o600, 0)  # the top layer deletes /f1
    flattened = [n for n in range(depth) if (home / f"l{n}" / "flatlink").exists()]
    if depth < 120:
        assert flattened == []
    else:
        assert flattened, "a chain this deep cannot be mounted without flattening"
    top = f"l{depth - 1}"
    path = driver.get(top)
    try:
        names = set(os.listdir(path))
        assert names == {f"f{n}" for n in range(2, depth)}
        assert (path / "f2").read_text() == "2"
    finally:
        driver.put(top)
    assert driver.changes(top, f"l{depth - 2}") == [Change("/f1", ChangeKind.DELETED),
                                                    Change(f"/f{depth - 1}", ChangeKind.ADDED)]


def test_a_new_instance_adopts_mounts_left_by_a_crash(home, tmp_path):
    first = OverlayDriver(DriverContext.standalone(OverlayDriver, home))
    first.create("base", None)
    first.create("child", "base")
    path = first.get("child")  # never put: the daemon "died"
    second = OverlayDriver(DriverContext.standalone(OverlayDriver, home))
    assert second.get("child") == path
    second.put("child")
    second.reaper.drain()
    assert mounts_below(home) == []
    second.cleanup()


def test_interrupted_creations_are_swept(home):
    (home / ".tmp-half-made-1234").mkdir()
    (home / "l").mkdir()
    os.symlink("../nothing/diff", home / "l" / "dangling")
    OverlayDriver(DriverContext.standalone(OverlayDriver, home))
    assert not (home / ".tmp-half-made-1234").exists()
    assert not os.path.lexists(home / "l" / "dangling")
