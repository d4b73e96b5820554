"""The graph contract's fixtures and helpers: a tree of every kind of file (``populate``), a
comparable view of one (``snapshot``), layer tars (``layer_tar``), and ``GraphFixtures`` (the
``graph_driver`` fixture). ``moorage.core.testing.graph`` describes the suite."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest

from moorage.core.sdk.hookspecs.graph import ChangeKind, GraphDriver
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

class GraphFixtures:
    """The graph suite's fixture (``graph_driver``) and helpers, against ``moorage_driver``."""

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
