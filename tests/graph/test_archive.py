"""core/sdk/archive.py: compression detection, safe extraction of hostile archives, tar writing."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile

import pytest

from moorage.core.sdk.archive import (
    IterStream,
    OverlayWhiteouts,
    clean_name,
    detect_compression,
    extract_in_root,
    extract_layer,
    layer_tar,
    open_decompressed,
    remove_path,
    resolve_in_root,
    tree_tar,
    tree_tar_in_root,
    write_file_in_root,
)
from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.sdk.hookspecs.graph import Change, ChangeKind
from moorage.core.testing.graph import layer_tar as make_tar
from moorage.core.testing.graph import populate, snapshot


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return d


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    return d


def sample() -> bytes:
    return make_tar(("etc/", "dir", None), ("etc/motd", "file", "hello\n")).getvalue()


@pytest.mark.parametrize(("compress", "kind"), [
    (lambda b: b, "none"), (gzip.compress, "gzip"), (bz2.compress, "bzip2"), (lzma.compress, "xz"),
])
@pytest.mark.root
def test_compression_is_detected_by_magic_bytes(dest, compress, kind):
    data = compress(sample())
    assert detect_compression(data[:6]) == kind
    extract_layer(open_decompressed(io.BytesIO(data)), dest)
    assert (dest / "etc" / "motd").read_text() == "hello\n"


def test_clean_name():
    assert clean_name("/etc//passwd") == "etc/passwd"
    assert clean_name("./a/../b/.") == "b"
    assert clean_name("./") == ""
    with pytest.raises(InvalidParameter):
        clean_name("a/../../b")


@pytest.mark.parametrize("entries", [
    [("../escape", "file", "x")],
    [("a/../../escape", "file", "x")],
    [("link", "symlink", "OUTSIDE"), ("link/escape", "file", "x")],
    [("link", "symlink", "../outside"), ("link/escape", "file", "x")],
    [("dir/", "dir", None), ("dir/link", "symlink", "OUTSIDE"), ("dir/link/escape", "file", "x")],
    [("hl", "hardlink", "../outside/target")],
    [("link", "symlink", "OUTSIDE"), ("hl", "hardlink", "link/target")],
], ids=["dotdot", "dotdot-inner", "abs-symlink-parent", "rel-symlink-parent", "nested-symlink-parent",
        "hardlink-out", "hardlink-through-symlink"])
@pytest.mark.root
def test_hostile_entries_are_refused(dest, outside, entries):
    (outside / "target").write_text("do not touch")
    entries = [(n, k, d.replace("OUTSIDE", str(outside)) if isinstance(d, str) else d) for n, k, d in entries]
    with pytest.raises(InvalidParameter):
        extract_layer(make_tar(*entries), dest)
    assert sorted(os.listdir(outside)) == ["target"]
    assert (outside / "target").read_text() == "do not touch"
    assert os.stat(outside / "target").st_nlink == 1


@pytest.mark.root
def test_absolute_names_land_inside(dest, outside):
    extract_layer(make_tar((f"{outside}/abs", "file", "x")), dest)
    assert (dest / str(outside).lstrip("/") / "abs").read_text() == "x"
    assert os.listdir(outside) == []


@pytest.mark.root
def test_existing_symlink_is_replaced_not_followed(dest, outside):
    (outside / "victim").write_text("original")
    os.symlink(outside / "victim", dest / "file")
    extract_layer(make_tar(("file", "file", "new")), dest)
    assert not (dest / "file").is_symlink() and (dest / "file").read_text() == "new"
    assert (outside / "victim").read_text() == "original"


def test_existing_symlink_to_a_directory_is_not_written_through(dest, outside):
    os.symlink(outside, dest / "d")
    with pytest.raises(InvalidParameter):
        extract_layer(make_tar(("d/file", "file", "x")), dest)
    assert os.listdir(outside) == []


@pytest.mark.root
def test_symlink_targets_are_kept_verbatim(dest):
    extract_layer(make_tar(("sh", "symlink", "/bin/busybox"), ("up", "symlink", "../../..")), dest)
    assert os.readlink(dest / "sh") == "/bin/busybox" and os.readlink(dest / "up") == "../../.."


@pytest.mark.root
def test_device_nodes_only_where_allowed(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("dev/null")
        info.type, info.devmajor, info.devminor, info.mode = tarfile.CHRTYPE, 1, 3, 0o666
        tar.addfile(info)
    allowed, refused = tmp_path / "allowed", tmp_path / "refused"
    allowed.mkdir()
    refused.mkdir()
    extract_layer(io.BytesIO(buf.getvalue()), allowed)
    st = os.lstat(allowed / "dev" / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    with pytest.raises(InvalidParameter):
        extract_layer(io.BytesIO(buf.getvalue()), refused, allow_devices=False)


@pytest.mark.parametrize("data", [b"garbage" * 200, gzip.compress(b"garbage" * 200), sample()[:700],
                                  gzip.compress(sample())[:40]],
                         ids=["garbage", "gzip-garbage", "truncated", "truncated-gzip"])
@pytest.mark.root
def test_corrupt_archives_are_invalid(dest, data):
    with pytest.raises(InvalidParameter):
        extract_layer(open_decompressed(io.BytesIO(data)), dest)


def test_invalid_whiteout_is_refused(dest):
    with pytest.raises(InvalidParameter):
        extract_layer(make_tar((".wh..", "file", "")), dest)


@pytest.mark.root
def test_overlay_whiteouts(dest):
    extract_layer(make_tar(("gone/.wh.file", "file", ""), ("opq/", "dir", None), ("opq/.wh..wh..opq", "file", ""),
                           ("opq/kept", "file", "k")), dest, OverlayWhiteouts())
    st = os.lstat(dest / "gone" / "file")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "opq", "trusted.overlay.opaque") == b"y"
    assert (dest / "opq" / "kept").read_text() == "k"


@pytest.mark.root
def test_whiteout_does_not_delete_what_the_same_layer_adds(dest):
    (dest / "old").write_text("old")
    extract_layer(make_tar(("old", "file", "readded"), (".wh.old", "file", "")), dest)
    assert (dest / "old").read_text() == "readded"


@pytest.mark.root
def test_tree_tar_round_trip_is_exact(tmp_path):
    source, copy = tmp_path / "source", tmp_path / "copy"
    source.mkdir()
    copy.mkdir()
    populate(source)
    data = b"".join(tree_tar(source))
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert "./etc/passwd" in names and all(n.startswith(".") for n in names)
    extract_layer(IterStream(tree_tar(source)), copy)
    assert snapshot(copy) == snapshot(source)
    assert os.lstat(copy / "hard1").st_ino == os.lstat(copy / "hard2").st_ino
    assert os.stat(copy / "sparse").st_blocks * 512 < 1 << 20
    assert os.stat(copy).st_mtime_ns == os.stat(source).st_mtime_ns


def test_tree_tar_of_a_subdirectory(tmp_path):
    source = tmp_path / "s"
    (source / "etc" / "conf.d").mkdir(parents=True)
    (source / "etc" / "conf.d" / "x").write_text("x")
    names = tarfile.open(fileobj=io.BytesIO(b"".join(tree_tar(source / "etc", "etc")))).getnames()
    assert names == ["etc", "etc/conf.d", "etc/conf.d/x"]


def test_layer_tar_of_changes(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("p")
    changes = [Change("/etc", ChangeKind.MODIFIED), Change("/etc/group", ChangeKind.DELETED),
               Change("/etc/passwd", ChangeKind.ADDED), Change("/var", ChangeKind.DELETED)]
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(layer_tar(root, changes))))
    assert tar.getnames() == ["etc", "etc/.wh.group", "etc/passwd", ".wh.var"]
    assert tar.extractfile("etc/passwd").read() == b"p"


def test_large_file_streams_in_chunks(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    with open(root / "big", "wb") as f:
        f.write(os.urandom(3 << 20))
    chunks = list(layer_tar(root, [Change("/big", ChangeKind.ADDED)]))
    assert max(len(c) for c in chunks) <= 1 << 20
    out = tmp_path / "out"
    out.mkdir()
    assert extract_layer(IterStream(chunks), out) == 3 << 20
    assert (out / "big").read_bytes() == (root / "big").read_bytes()


def test_resolve_in_root_keeps_symlinks_inside_the_root(tmp_path):
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    (root / "var").mkdir()
    os.symlink("/run", root / "var" / "run")  # absolute: means the root's /run, not the host's
    os.symlink("../../..", root / "up")
    assert resolve_in_root(root, "/var/run/x/y") == "run/x/y"
    assert resolve_in_root(root, "/up/etc") == "etc"  # `..` stops at the root, as in a chroot
    assert resolve_in_root(root, "/new/dir") == "new/dir"
    assert resolve_in_root(root, "/run") == "run"
    with pytest.raises(ValueError):
        resolve_in_root(root, "/missing/../../x")


# -- the confined helpers ---------------------------------------------------------------------
def pax_tar(name: str, headers: dict[str, str] | None = None, data: bytes = b"x") -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.pax_headers = len(data), headers or {}
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_nul_in_a_name_is_refused(dest):
    with pytest.raises(InvalidParameter, match="NUL"):
        extract_layer(pax_tar("f", {"path": "etc/passwd\0/evil"}), dest)
    assert os.listdir(dest) == []


@pytest.mark.root
def test_overlay_bookkeeping_xattrs_are_never_taken_from_an_archive(dest):
    headers = {"SCHILY.xattr.trusted.overlay.redirect": "/etc", "SCHILY.xattr.user.kept": "yes"}
    extract_layer(pax_tar("f", headers), dest)
    names = os.listxattr(dest / "f")
    assert "user.kept" in names and not any(n.startswith("trusted.overlay.") for n in names)


@pytest.mark.root
def test_extract_in_root_resolves_the_destination_inside_the_root(tmp_path, outside):
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    os.symlink("/real", root / "link")  # absolute: the root's own /real
    os.symlink(str(outside), root / "real" / "out")
    extract_in_root(make_tar(("f", "file", "x")), root, "/link")
    assert (root / "real" / "f").read_text() == "x"
    with pytest.raises(InvalidParameter):
        extract_in_root(make_tar(("out/f", "file", "x")), root, "/link")  # an existing symlink
    with pytest.raises(InvalidParameter):
        extract_in_root(make_tar(("../f", "file", "x")), root, "/link")  # confined to /real
    with pytest.raises(NotFound):
        extract_in_root(make_tar(("f", "file", "x")), root, "/missing")
    extract_in_root(make_tar(("f", "file", "y")), root, "/new/dir", create=True)
    assert (root / "new" / "dir" / "f").read_text() == "y"
    assert os.listdir(outside) == []


def test_tree_tar_in_root_stays_inside_and_releases(tmp_path, outside):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "motd").write_text("hi")
    os.symlink("/etc", root / "abs")
    (outside / "secret").write_text("secret")
    os.symlink(str(outside), root / "etc" / "out")
    released = []
    chunks = tree_tar_in_root(root, "/abs/../etc", done=lambda: released.append(1))
    tar = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
    assert sorted(tar.getnames()) == ["etc", "etc/motd", "etc/out"]
    assert tar.getmember("etc/out").issym() and released == [1]
    link = tarfile.open(fileobj=io.BytesIO(b"".join(tree_tar_in_root(root, "/abs"))))
    assert link.getnames() == ["abs"] and link.getmember("abs").issym()  # the link, not its target
    with pytest.raises(FileNotFoundError):
        tree_tar_in_root(root, "/nope", done=lambda: released.append(2))
    assert released == [1, 2]


def test_write_file_in_root(tmp_path, outside):
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("/", root / "up")
    os.symlink(str(outside / "victim"), root / "dangling")
    write_file_in_root(root, "/up/a/b/file", io.BytesIO(b"data"), 0o600)
    assert (root / "a" / "b" / "file").read_bytes() == b"data"
    assert stat.S_IMODE(os.stat(root / "a" / "b" / "file").st_mode) == 0o600
    with pytest.raises(Conflict):
        write_file_in_root(root, "/dangling", io.BytesIO(b"x"), 0o600)  # never through the link
    with pytest.raises(Conflict):
        write_file_in_root(root, "/a/b/file", io.BytesIO(b"x"), 0o600)
    assert os.listdir(outside) == []


def test_remove_path_never_follows_a_symlink(tmp_path, outside):
    (outside / "keep").write_text("k")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(str(outside), tree / "link")
    remove_path(tree / "link")
    remove_path(tree)
    assert (outside / "keep").read_text() == "k" and not tree.exists()
