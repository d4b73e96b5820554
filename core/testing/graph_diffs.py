"""The graph contract, part 2: changes and diffs, applying layers (whiteouts, hostile and corrupt tars).

``GraphDriverContract`` (``moorage.core.testing.graph``) is all parts together."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.graph import Change
from moorage.core.sdk.layers import NaiveDiffer, differ_for
from moorage.core.sdk.mounts import mounts_below, unmount_below  # noqa: F401  (re-exported for drivers' own tests)
from moorage.core.testing.graph_fixtures import (
    GraphFixtures,
    K,
    layer_tar,
)


class GraphDiffsContract(GraphFixtures):
    """The graph contract, part 2: changes and diffs, applying layers (whiteouts, hostile and corrupt tars)."""

    # -- changes and diffs -----------------------------------------------------------------
    @staticmethod
    def mutate(root: Path) -> None:
        (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/ash\n")  # modified
        os.chmod(root / "owned", 0o600)  # modified (mode only)
        (root / "etc" / "hosts").unlink()  # deleted
        shutil.rmtree(root / "etc" / "conf.d")  # deleted dir, listed once
        (root / "srv" / "www").mkdir(parents=True)  # added dir: every child listed
        (root / "srv" / "www" / "index.html").write_text("<html>")
        (root / "bin" / "new-tool").write_bytes(b"\x7fELF")
        os.chmod(root / "bin" / "new-tool", 0o755)

    def test_changes(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        self.write(graph_driver, "child", self.mutate)
        found = differ_for(graph_driver).changes("child", "base")
        expected = [
            Change("/bin", K.MODIFIED), Change("/bin/new-tool", K.ADDED),
            Change("/etc", K.MODIFIED), Change("/etc/conf.d", K.DELETED), Change("/etc/hosts", K.DELETED),
            Change("/etc/passwd", K.MODIFIED), Change("/owned", K.MODIFIED),
            Change("/srv", K.ADDED), Change("/srv/www", K.ADDED), Change("/srv/www/index.html", K.ADDED),
        ]
        assert found == expected

    def test_changes_of_unchanged_child_are_empty(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        assert differ_for(graph_driver).changes("child", "base") == []
        assert differ_for(graph_driver).diff_size("child", "base") == 0

    def test_changes_of_base_layer_list_everything(self, graph_driver):
        self.base(graph_driver)
        found = differ_for(graph_driver).changes("base", None)
        assert all(c.kind == K.ADDED for c in found)
        assert Change("/etc/conf.d/a.conf", K.ADDED) in found and len(found) == len(self.view(graph_driver, "base"))

    def test_native_differ_agrees_with_generic(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        self.write(graph_driver, "child", self.mutate)
        native, generic = differ_for(graph_driver), NaiveDiffer(graph_driver)
        assert native.changes("child", "base") == generic.changes("child", "base")
        assert native.diff_size("child", "base") == generic.diff_size("child", "base")

    def test_diff_size(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        self.write(graph_driver, "child", lambda r: (r / "blob").write_bytes(b"x" * 12345))
        assert differ_for(graph_driver).diff_size("child", "base") == 12345

    def test_diff_apply_round_trip(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("child", "base")
        self.write(graph_driver, "child", self.mutate)
        differ = differ_for(graph_driver)
        data = b"".join(differ.diff("child", "base"))
        names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
        assert "etc/.wh.hosts" in names and "etc/.wh.conf.d" in names
        graph_driver.create("copy", "base")
        differ.apply_diff("copy", "base", io.BytesIO(data))
        assert self.view(graph_driver, "copy") == self.view(graph_driver, "child")
        assert differ.changes("copy", "base") == differ.changes("child", "base")

    def test_base_layer_round_trip(self, graph_driver):
        self.base(graph_driver)
        differ = differ_for(graph_driver)
        data = b"".join(differ.diff("base", None))
        graph_driver.create("copy", None)
        size = differ.apply_diff("copy", None, io.BytesIO(data))
        assert size == differ.diff_size("base", None)
        copy, base = self.view(graph_driver, "copy"), self.view(graph_driver, "base")
        assert copy == base
        path = graph_driver.get("copy")
        try:
            assert os.lstat(path / "hard1").st_ino == os.lstat(path / "hard2").st_ino
            assert os.stat(path / "sparse").st_blocks * 512 < 1 << 20
        finally:
            graph_driver.put("copy")

    def test_apply_whiteouts_and_opaque_dirs(self, graph_driver):
        self.base(graph_driver)
        graph_driver.create("layer", "base")
        tar = layer_tar(
            ("etc/", "dir", None),
            ("etc/.wh.hosts", "file", ""),
            ("etc/conf.d/", "dir", None),
            ("etc/conf.d/.wh..wh..opq", "file", ""),
            ("etc/conf.d/c.conf", "file", "c\n"),
            ("bin/.wh.tool", "file", ""),
            ("bin/.wh.never-existed", "file", ""),
        )
        differ = differ_for(graph_driver)
        differ.apply_diff("layer", "base", tar)
        view = self.view(graph_driver, "layer")
        assert "etc/hosts" not in view and "bin/tool" not in view and "etc/passwd" in view
        assert sorted(k for k in view if k.startswith("etc/conf.d/")) == ["etc/conf.d/c.conf"]
        assert not any(".wh." in k for k in view)
        assert self.view(graph_driver, "base")["etc/conf.d/a.conf"]  # the parent is untouched
        changes = differ.changes("layer", "base")
        for expected in (Change("/etc/hosts", K.DELETED), Change("/bin/tool", K.DELETED),
                         Change("/etc/conf.d/a.conf", K.DELETED), Change("/etc/conf.d/c.conf", K.ADDED)):
            assert expected in changes
        # the diff of the layer carries the same deletions to another layer
        graph_driver.create("again", "base")
        differ.apply_diff("again", "base", io.BytesIO(b"".join(differ.diff("layer", "base"))))
        again = self.view(graph_driver, "again")
        assert sorted(k for k in again if k.startswith("etc/conf.d/")) == ["etc/conf.d/c.conf"]
        assert "etc/hosts" not in again and "bin/tool" not in again

    def test_apply_refuses_escaping_entries(self, graph_driver, driver_root, tmp_path):
        self.base(graph_driver)
        differ = differ_for(graph_driver)
        outside = tmp_path / f"outside-{uuid.uuid4().hex[:6]}"
        outside.mkdir()
        hostile = [
            [("../../../../../../../../" + str(outside).lstrip("/") + "/dotdot", "file", "x")],
            [("evil", "symlink", str(outside)), ("evil/through-symlink", "file", "x")],
            [("hl", "hardlink", "../../../../../../../../etc/passwd")],
        ]
        for n, entries in enumerate(hostile):
            graph_driver.create(f"hostile{n}", "base")
            with pytest.raises(InvalidParameter):
                differ.apply_diff(f"hostile{n}", "base", layer_tar(*entries))
        assert os.listdir(outside) == []

    def test_apply_absolute_names_stay_inside(self, graph_driver):
        graph_driver.create("layer", None)
        differ_for(graph_driver).apply_diff("layer", None, layer_tar(("/abs/file", "file", "inside")))
        path = graph_driver.get("layer")
        try:
            assert (path / "abs" / "file").read_text() == "inside"
        finally:
            graph_driver.put("layer")

    def test_apply_refuses_corrupt_tar(self, graph_driver):
        graph_driver.create("layer", None)
        with pytest.raises(InvalidParameter):
            differ_for(graph_driver).apply_diff("layer", None, io.BytesIO(b"this is not a tar" * 100))
