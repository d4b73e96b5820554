"""The graph driver contract suite: one behaviour suite every graph driver must pass.

Run it against an installed driver by name (``pytest --pyargs moorage.core.testing
--moorage-driver graph=NAME``), or from a driver package's own tests by subclassing
``GraphDriverContract`` and overriding ``moorage_driver`` (see ``moorage.core.testing.plugin``).
Each test gets a fresh daemon root (``driver_root``; the driver's home is below it) and builds
the driver with ``driver_factory``, as the daemon does. Afterwards every instance is cleaned up
and anything still mounted below the root is unmounted, pass or fail. The diff tests go
through ``moorage.core.sdk.layers.differ_for``, so a driver with a native ``Differ`` is checked
against the same expectations as the generic one.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import stat
import tarfile
import uuid
from pathlib import Path

import pytest

from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.sdk.hookspecs.graph import Change, ChangeKind, GraphDriver
from moorage.core.sdk.layers import NaiveDiffer, differ_for
from moorage.core.sdk.mounts import mounts_below, unmount_below  # noqa: F401  (re-exported for drivers' own tests)

OLD = 1_000_000_000  # a fixed mtime, so copies that reset times are caught
K = ChangeKind


# -- helpers a third-party suite may reuse ---------------------------------------------------
def populate(root: Path) -> None:
    """A tree exercising everything a layer must keep: modes and special bits, owners, xattrs,
    hardlinks, symlinks, devices, a fifo, a sparse file, old timestamps."""
    (root / "bin").mkdir()
    tool = root / "bin" / "tool"
    tool.write_bytes(b"#!/bin/sh\necho tool\n")
    os.chmod(tool, 0o4755)
    owned = root / "owned"
    owned.write_text("owned by 1234:5678\n")
    os.chown(owned, 1234, 5678)
    os.chmod(owned, 0o640)
    (root / "sgid").mkdir()
    os.chmod(root / "sgid", 0o2775)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost\n")
    (root / "etc" / "conf.d").mkdir()
    (root / "etc" / "conf.d" / "a.conf").write_text("a\n")
    (root / "etc" / "conf.d" / "b.conf").write_text("b\n")
    (root / "hard1").write_text("linked\n")
    os.link(root / "hard1", root / "hard2")
    os.symlink("/etc/passwd", root / "abs-link")
    os.symlink("bin/tool", root / "rel-link")
    (root / "dev").mkdir()
    os.mknod(root / "dev" / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(root / "dev" / "loop9", 0o660 | stat.S_IFBLK, os.makedev(7, 9))
    os.mkfifo(root / "dev" / "fifo", 0o600)
    with open(root / "sparse", "wb") as f:
        f.truncate(64 << 20)
        f.seek((64 << 20) - 5)
        f.write(b"tail\n")
    os.setxattr(root / "etc" / "passwd", "user.moorage", b"value")
    os.setxattr(root / "bin" / "tool", "trusted.moorage", b"\x00\xffbinary")
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.utime(path, ns=(OLD * 10**9, OLD * 10**9), follow_symlinks=False)
    os.utime(root, ns=(OLD * 10**9, OLD * 10**9))


def snapshot(root: Path, mtime_precision_ns: int = 1) -> dict[str, tuple]:
    """Everything a layer's view must preserve, per relative path."""
    found = {}
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        content: object = None
        if stat.S_ISREG(st.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        xattrs = ()
        if not stat.S_ISLNK(st.st_mode):
            names = [n for n in os.listxattr(path, follow_symlinks=False) if not n.startswith("trusted.overlay.")]
            xattrs = tuple(sorted((n, os.getxattr(path, n, follow_symlinks=False)) for n in names))
        size = None if stat.S_ISDIR(st.st_mode) else st.st_size
        found[rel] = (st.st_mode, st.st_uid, st.st_gid, st.st_rdev, size,
                      round(st.st_mtime_ns / mtime_precision_ns), content, xattrs)
    return found


def layer_tar(*entries: tuple) -> io.BytesIO:
    """A tar built from ``(name, kind, data)`` tuples: kind is "file", "dir", "symlink" or
    "hardlink" (data is then the link target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = OLD
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, data
                tar.addfile(info)
            else:
                payload = data.encode() if isinstance(data, str) else data
                info.size, info.mode = len(payload), 0o644
                tar.addfile(info, io.BytesIO(payload))
    buf.seek(0)
    return buf


class GraphDriverContract:
    """The graph driver behaviour suite, against ``moorage_driver``."""

    family = "graph"

    #: chain length of the deep-chain test (overlay must handle 100+ layers)
    deep_chain = 130

    @pytest.fixture
    def graph_driver(self, driver_factory) -> GraphDriver:
        self.make_driver = driver_factory  # another instance on the same root: a restarted daemon
        return driver_factory()

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def write(driver: GraphDriver, id: str, fn) -> None:
        path = driver.get(id)
        try:
            fn(path)
        finally:
            driver.put(id)

    @staticmethod
    def view(driver: GraphDriver, id: str, precision: int = 1) -> dict[str, tuple]:
        path = driver.get(id)
        try:
            return snapshot(path, precision)
        finally:
            driver.put(id)

    def base(self, driver: GraphDriver, id: str = "base") -> str:
        driver.create(id, None)
        self.write(driver, id, populate)
        return id

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

