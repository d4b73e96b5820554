"""The commit race: a running container swaps a directory of its root filesystem for a symlink to
a directory outside it while a commit (``diff``) or ``changes`` reads the tree. Nothing from
outside may appear, on any graph driver, through the native differ and the generic one.

"The container" here is this process writing into the layer as ``get`` shows it (the path a
container's root is pivoted into); the outside directory holds a secret the tar must not carry
and a name the change list must not show.
"""

from __future__ import annotations

import io
import os
import tarfile
import threading
import time
import uuid

import pytest

from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.errors import NotSupported
from moorage.core.sdk.layers import NaiveDiffer, differ_for
from moorage.core.testing.graph import layer_tar

from .conftest import registered_graph_drivers

SECRET = b"SECRET-FROM-OUTSIDE-" + uuid.uuid4().hex.encode()


@pytest.fixture(params=["vfs", "overlay", "btrfs"])
def driver(request, tmp_path):
    home = tmp_path / "home"
    if request.param == "btrfs":
        home = request.getfixturevalue("btrfs_mount") / f"race-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    cls = registered_graph_drivers()[request.param]
    try:
        graph = cls(DriverContext.standalone(cls, home))
    except NotSupported as exc:
        pytest.skip(f"{request.param}: {exc}")
    yield graph
    graph.cleanup()


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    for name in ("passwd", "shadow", "outside-only"):
        (d / name).write_bytes(SECRET)
    return d


def running_container(driver):
    """A base layer and a container layer on it holding ``d/`` (with files named like the
    outside ones) and enough other files that a diff takes a while; returns its root."""
    driver.create("base", None)
    differ_for(driver).apply_diff("base", None, layer_tar(("etc/", "dir", None), ("etc/motd", "file", "hi")))
    driver.create("ctr", "base")
    root = driver.get("ctr")
    (root / "d").mkdir()
    for name in ("passwd", "shadow"):
        (root / "d" / name).write_text("inside\n")
    (root / "many").mkdir()
    for i in range(300):
        (root / "many" / f"f{i:03d}").write_text("x" * 100)
    return root


def swap(root, outside) -> None:
    # a full uuid: the flipper swaps thousands of times, and six hex digits collided (ENOTEMPTY)
    os.rename(root / "d", root / f"d-{uuid.uuid4().hex}")
    os.symlink(outside, root / "d")


def unswap(root) -> None:
    os.unlink(root / "d")
    (root / "d").mkdir()
    (root / "d" / "passwd").write_text("inside\n")


def assert_clean_tar(data: bytes) -> None:
    assert SECRET not in data, "a commit carried the content of a file outside the container"
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert not any("outside-only" in n for n in names), names


@pytest.mark.parametrize("generic", [False, True], ids=["driver-differ", "generic-differ"])
def test_swap_after_the_change_list_is_made(driver, outside, generic):
    """Deterministic: the directory becomes a symlink once the diff has started streaming (its
    change list, with d/passwd and d/shadow in it, already made)."""
    if not generic and isinstance(differ_for(driver), NaiveDiffer):
        pytest.skip("no native differ: the generic-differ case is this driver's")
    root = running_container(driver)
    try:
        differ = NaiveDiffer(driver) if generic else differ_for(driver)
        chunks = differ.diff("ctr", "base")
        first = next(chunks)
        swap(root, outside)
        assert_clean_tar(first + b"".join(chunks))
    finally:
        driver.put("ctr")


@pytest.mark.parametrize("generic", [False, True], ids=["driver-differ", "generic-differ"])
def test_swapping_while_commits_and_changes_run(driver, outside, generic):
    """A container flips ``d`` between a directory and a symlink to the outside as fast as it
    can while commits and change lists are taken again and again."""
    if not generic and isinstance(differ_for(driver), NaiveDiffer):
        pytest.skip("no native differ: the generic-differ case is this driver's")
    root = running_container(driver)
    differ = NaiveDiffer(driver) if generic else differ_for(driver)
    stop = threading.Event()
    flips: list[int] = [0]
    errors: list[BaseException] = []

    def flip():
        try:
            while not stop.is_set():
                swap(root, outside)
                unswap(root)
                flips[0] += 1
        except BaseException as exc:  # the race must run for the whole test: its end fails it
            errors.append(exc)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    try:
        deadline = time.monotonic() + 2
        rounds = 0
        while rounds < 3 or time.monotonic() < deadline:
            data = b"".join(differ.diff("ctr", "base"))
            assert_clean_tar(data)
            # and the commit is a consistent tar: nothing below an entry that is not a directory
            driver.create(f"commit{rounds}", "base")
            differ.apply_diff(f"commit{rounds}", "base", io.BytesIO(data))
            driver.remove(f"commit{rounds}")
            paths = [c.path for c in differ.changes("ctr", "base")]
            assert not any("outside-only" in p for p in paths), paths
            rounds += 1
    finally:
        stop.set()
        flipper.join(10)
        driver.put("ctr")
    assert not errors, f"the flipper stopped: {errors[0]!r}"
    assert flips[0] > 0
