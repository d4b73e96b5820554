"""The graph contract, part 1: creating layers, a child's view of its parent, get / put / remove / cleanup.

``GraphDriverContract`` (``moorage.core.testing.graph``) is all parts together."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from moorage.core.sdk.errors import Conflict, NotFound
from moorage.core.sdk.hookspecs.graph import Change
from moorage.core.sdk.layers import differ_for
from moorage.core.sdk.mounts import mounts_below, unmount_below  # noqa: F401  (re-exported for drivers' own tests)
from moorage.core.testing.graph_fixtures import (
    GraphFixtures,
    K,
)


class GraphLayersContract(GraphFixtures):
    """The graph contract, part 1: creating layers, a child's view of its parent, get / put / remove / cleanup."""

    # -- create ----------------------------------------------------------------------------
    def test_create_empty(self, graph_driver):
        graph_driver.create("empty", None)
        assert graph_driver.exists("empty")
        path = graph_driver.get("empty")
        try:
            assert path.is_dir()
            assert os.listdir(path) == []
        finally:
            graph_driver.put("empty")

    def test_create_existing_is_conflict(self, graph_driver):
        graph_driver.create("one", None)
        with pytest.raises(Conflict):
            graph_driver.create("one", None)

    def test_create_missing_parent_is_not_found_and_leaves_nothing(self, graph_driver):
        with pytest.raises(NotFound):
            graph_driver.create("orphan", "no-such-parent")
        assert not graph_driver.exists("orphan")
        graph_driver.create("orphan", None)  # the id is free

    def test_unknown_layer_is_not_found(self, graph_driver):
        assert not graph_driver.exists("ghost")
        with pytest.raises(NotFound):
            graph_driver.get("ghost")
        with pytest.raises(NotFound):
            graph_driver.remove("ghost")
        with pytest.raises(NotFound):
            differ_for(graph_driver).changes("ghost", None)

    def test_child_shows_parent_exactly(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        assert self.view(graph_driver, "child") == self.view(graph_driver, "base")
        path = graph_driver.get("child")
        try:
            one, two = os.lstat(path / "hard1"), os.lstat(path / "hard2")
            assert (one.st_ino, one.st_nlink) == (two.st_ino, 2)
            sparse = os.stat(path / "sparse")
            assert sparse.st_size == 64 << 20
            assert sparse.st_blocks * 512 < 1 << 20, "the sparse file was filled in"
            assert os.lstat(path / "bin" / "tool").st_mode & 0o7777 == 0o4755
            assert os.getxattr(path / "bin" / "tool", "trusted.moorage") == b"\x00\xffbinary"
        finally:
            graph_driver.put("child")

    def test_child_writes_leave_parent_alone(self, graph_driver):
        self.base(graph_driver)
        before = self.view(graph_driver, "base")
        graph_driver.create("child", "base")

        def mutate(root: Path) -> None:
            (root / "etc" / "passwd").write_text("changed\n")
            (root / "hard1").write_text("changed through a hardlink\n")
            shutil.rmtree(root / "etc" / "conf.d")
            os.chmod(root / "owned", 0o600)
            os.chown(root / "bin" / "tool", 42, 42)
            (root / "new").write_text("new\n")

        self.write(graph_driver, "child", mutate)
        assert self.view(graph_driver, "base") == before
        after = self.view(graph_driver, "child")
        assert "etc/conf.d" not in after and "new" in after

    def test_grandchild_sees_both(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        self.write(graph_driver, "child", lambda r: (r / "from-child").write_text("c"))
        graph_driver.create("grandchild", "child")
        view = self.view(graph_driver, "grandchild")
        assert "from-child" in view and "etc/passwd" in view

    # -- get / put / remove / cleanup ------------------------------------------------------
    def test_get_put_reference_counts(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        first = graph_driver.get("child")
        second = graph_driver.get("child")
        assert first == second
        graph_driver.put("child")
        assert (first / "etc" / "passwd").read_text().startswith("root:")  # still held once
        graph_driver.put("child")
        graph_driver.put("child")  # unmatched: ignored
        again = graph_driver.get("child")
        try:
            assert again == first and (again / "etc" / "passwd").exists()
        finally:
            graph_driver.put("child")

    def test_remove(self, graph_driver, driver_root):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        graph_driver.remove("child")
        assert not graph_driver.exists("child")
        assert graph_driver.exists("base")
        graph_driver.create("child", "base")  # the id can be used again

    def test_remove_while_mounted(self, graph_driver, driver_root):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        graph_driver.get("child")
        graph_driver.get("child")
        graph_driver.remove("child")
        assert not graph_driver.exists("child")
        with pytest.raises(NotFound):
            graph_driver.get("child")
        graph_driver.cleanup()  # waits for an unmount the driver left to the background
        assert [p for p in mounts_below(driver_root) if "child" in p] == []

    def test_cleanup_unmounts_everything_and_keeps_layers(self, graph_driver, driver_root):
        self.base(graph_driver)
        for n in range(3):
            graph_driver.create(f"c{n}", "base")
            graph_driver.get(f"c{n}")
        graph_driver.cleanup()
        assert mounts_below(driver_root) == []
        graph_driver.cleanup()  # already clean: no error
        for n in range(3):
            assert graph_driver.exists(f"c{n}")
        path = graph_driver.get("c0")  # counts were reset: a fresh get works
        try:
            assert (path / "etc" / "passwd").exists()
        finally:
            graph_driver.put("c0")

    def test_layers_survive_a_new_driver_instance(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        self.write(graph_driver, "child", lambda r: (r / "kept").write_text("kept"))
        expected = self.view(graph_driver, "child")
        graph_driver.cleanup()
        again = self.make_driver()
        assert again.exists("child") and again.exists("base")
        assert self.view(again, "child") == expected

    def test_status(self, graph_driver):
        status = graph_driver.status()
        assert status and all(isinstance(k, str) and isinstance(v, str) for k, v in status)

    def test_deep_chain(self, graph_driver, driver_root):
        graph_driver.create("l0", None)
        for n in range(1, self.deep_chain):
            graph_driver.create(f"l{n}", f"l{n - 1}")
            self.write(graph_driver, f"l{n}", lambda r, n=n: (r / f"f{n}").write_text(str(n)))
        top = f"l{self.deep_chain - 1}"
        path = graph_driver.get(top)
        try:
            assert len(os.listdir(path)) == self.deep_chain - 1
            assert (path / "f1").read_text() == "1"
        finally:
            graph_driver.put(top)
        assert differ_for(graph_driver).changes(top, f"l{self.deep_chain - 2}") == \
            [Change(f"/f{self.deep_chain - 1}", K.ADDED)]
