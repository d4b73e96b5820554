"""Hostile archives for property tests (hypothesis): tar entry sequences that try to write,
link, delete or read outside the tree they are applied to, and the canaries that show whether
one did.

An archive aims at a *victim* directory beside the target tree (never at the host's own
``/etc``): entry names and link targets may hold the token ``{victim}``, the victim's absolute
path without its leading ``/``, so ``/{victim}/etc/passwd`` is the absolute path of a canary
file and ``x/y/{victim}/etc/passwd`` reaches it through a symlink ``x/y -> /``.

Used by moorage's tests (``tests/graph/test_hostile_archives.py``; the builder's paths, which
are no driver's, in ``tests/build/hostile_sinks.py``) and by ``bench/fuzz_archives.py``; a
third-party graph driver can apply ``hostile_archives()`` to its own layers the same way.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

VICTIM = "{victim}"
OLD = 1_000_000_000


@dataclass(frozen=True)
class Entry:
    """One tar entry. ``kind``: file, dir, symlink, hardlink, chardev, blockdev, fifo, or
    ``nulname`` (a PAX ``path`` holding a NUL byte). ``data``: content or link target."""

    kind: str
    name: str
    data: str = ""


def expand(text: str, victim: Path) -> str:
    return text.replace(VICTIM, str(victim).lstrip("/"))


def build_tar(entries: list[Entry], victim: Path) -> bytes:
    """The PAX tar of ``entries`` with ``{victim}`` expanded."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            info = tarfile.TarInfo(expand(entry.name, victim))
            info.mtime, info.mode = OLD, 0o644
            payload = b""
            if entry.kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif entry.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, expand(entry.data, victim)
            elif entry.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, expand(entry.data, victim)
            elif entry.kind in ("chardev", "blockdev"):
                info.type = tarfile.CHRTYPE if entry.kind == "chardev" else tarfile.BLKTYPE
                info.devmajor, info.devminor = (1, 3) if entry.kind == "chardev" else (7, 0)
            elif entry.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif entry.kind == "nulname":
                info.pax_headers = {"path": expand(entry.name, victim) + "\0/evil"}
                payload = entry.data.encode()
            else:
                payload = entry.data.encode()
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload else None)
    return buf.getvalue()


# -- the strategy --------------------------------------------------------------------------------
_COMPONENTS = ["x", "y", "etc", "passwd", "dir", "file"]
_PREFIXES = ["", "", "", "/", "./", "../", "x/../", "../../", "/{victim}/", "x/y/{victim}/"]
#: never "/" or a host path: were the extraction broken, a random name below such a link would
#: write to the host itself (the explicit examples use "/" only with names reaching the victim)
_LINK_TARGETS = ["/{victim}", "/{victim}/etc", "/{victim}/file", "/{victim}/dir/sub", "nope", ".", "..",
                 "x", "x/y", *[("../" * k) + "victim" for k in range(1, 8)]]
_HARDLINK_TARGETS = ["x", "x/y", "x/y/f", "etc/passwd", "file", "/{victim}/file", "/{victim}/etc/passwd",
                     "../victim/file", "../../victim/file", "x/y/{victim}/file", "{victim}/file", ""]

names = st.builds(lambda prefix, parts: prefix + "/".join(parts),
                  st.sampled_from(_PREFIXES), st.lists(st.sampled_from(_COMPONENTS), min_size=1, max_size=4))


def _whiteout(directory: str, hidden: str) -> Entry:
    return Entry("file", f"{directory}/.wh.{hidden}" if directory else f".wh.{hidden}")


entry = st.one_of(
    st.builds(Entry, st.just("file"), names, st.sampled_from(["pwned", "", "x" * 1000])),
    st.builds(Entry, st.just("dir"), names),
    st.builds(Entry, st.just("symlink"), names, st.sampled_from(_LINK_TARGETS) | names),
    st.builds(Entry, st.just("hardlink"), names, st.sampled_from(_HARDLINK_TARGETS) | names),
    st.builds(_whiteout, names | st.just(""), st.sampled_from([*_COMPONENTS, ".", "..", "", ".wh..opq"])),
    st.builds(lambda d: Entry("file", f"{d}/.wh..wh..opq"), names),
    st.builds(Entry, st.sampled_from(["chardev", "blockdev", "fifo"]), names),
)

#: sequences of up to 12 entries: enough for plant-a-symlink-then-write-through-it chains
hostile_archives = st.lists(entry, min_size=1, max_size=12)


# -- the cases of issue 13, for @example --------------------------------------------------------
E = Entry
ISSUE_CASES: list[list[Entry]] = [
    # the stale directory cache of the opaque marker: plant a symlink, then write through it
    [E("file", "x/y/f", "a"), E("file", "x/.wh..wh..opq"), E("symlink", "x/y", "/"),
     E("file", "x/y/{victim}/etc/passwd", "pwned")],
    [E("file", "x/y/f", "a"), E("file", "x/.wh..wh..opq"), E("symlink", "x/y", "/{victim}"),
     E("file", "x/y/etc/passwd", "pwned")],
    # the variant: a plain file where a host directory stands (the old code rmtree'd it)
    [E("file", "x/y/f", "a"), E("file", "x/.wh..wh..opq"), E("symlink", "x/y", "/{victim}"),
     E("file", "x/y/dir", "pwned")],
    [E("file", "x/y/f", "a"), E("file", "x/.wh..wh..opq"), E("symlink", "x/y", "/"),
     E("dir", "x/y/{victim}/dir"), E("symlink", "x/y/{victim}/etc", "/")],
    # whiteouts and opaque markers through a symlink
    [E("symlink", "x", "/{victim}"), E("file", "x/.wh.file")],
    [E("symlink", "x", "/{victim}"), E("file", "x/.wh..wh..opq")],
    [E("dir", "x"), E("file", "x/f"), E("file", ".wh.x"), E("symlink", "x", "/{victim}"), E("file", "x/.wh.dir")],
    # `..` and absolute names
    [E("file", "../victim/file", "pwned")],
    [E("file", "x/../../victim/file", "pwned")],
    [E("file", "/{victim}/file", "lands inside")],
    # hardlinks out of the tree, directly and through symlinks
    [E("hardlink", "hl", "/{victim}/etc/passwd")],
    [E("hardlink", "hl", "../victim/file")],
    [E("symlink", "x", "/{victim}"), E("hardlink", "hl", "x/file")],
    [E("symlink", "x", "/"), E("hardlink", "hl", "x/{victim}/file")],
    # symlinks: relative, dangling, looping; duplicates and file <-> directory replacements
    [E("symlink", "x", "../victim"), E("file", "x/file", "pwned")],
    [E("symlink", "x", "nope"), E("file", "x/file", "pwned")],
    [E("symlink", "x", "y"), E("symlink", "y", "x"), E("file", "x/file", "pwned")],
    [E("file", "x", "1"), E("dir", "x"), E("file", "x/f", "2"), E("symlink", "x", "/{victim}"),
     E("file", "x/file", "pwned"), E("dir", "x"), E("file", "x", "3")],
    # devices (refused in build contexts and ADD, allowed in layers as Docker did) and NUL names
    [E("chardev", "dev/null"), E("blockdev", "x/y/{victim}/dev/sda")],
    [E("nulname", "etc/passwd", "pwned")],
]


# -- canaries ------------------------------------------------------------------------------------
def with_issue_examples(test):
    """``test`` (a hypothesis test taking ``entries``) with every case of ``ISSUE_CASES`` as an
    explicit example."""
    for case in ISSUE_CASES:
        test = example(entries=case)(test)
    return test


def nothing_outside_the_target_changes(examples: int):
    """The property test of a module whose ``target`` fixture yields ``(sink, base)``: for
    ``examples`` generated archives and every case of ``ISSUE_CASES``, nothing outside the
    target tree changes. A module binds it to a ``test_`` name."""

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(entries=hostile_archives)
    @with_issue_examples
    def test(target, entries):
        sink, base = target
        check_hostile(sink, base, entries)

    return test


def plant_canaries(victim: Path) -> None:
    """A victim directory with files and directories the archives aim at."""
    (victim / "etc").mkdir(parents=True)
    (victim / "etc" / "passwd").write_text("root:x:0:0:canary\n")
    (victim / "file").write_text("canary\n")
    (victim / "dir" / "sub").mkdir(parents=True)
    (victim / "dir" / "sub" / "deep").write_text("canary\n")


def tree_state(root: Path) -> dict[str, tuple]:
    """Everything that could betray a write below ``root`` (``root`` included): type, mode,
    owner, size, mtime, link count, inode and content of every path; symlinks are not
    followed."""
    found: dict[str, tuple] = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        path = root / rel if rel else root
        st_ = os.lstat(path)
        content: object = None
        if stat.S_ISREG(st_.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        elif stat.S_ISLNK(st_.st_mode):
            content = os.readlink(path)
        found[rel] = (st_.st_mode, st_.st_uid, st_.st_gid, st_.st_size, st_.st_mtime_ns, st_.st_nlink,
                      st_.st_ino, content)
        if stat.S_ISDIR(st_.st_mode):
            pending.extend(f"{rel}/{name}" if rel else name for name in os.listdir(path))
    return found


# -- the paths that apply archives ---------------------------------------------------------------
PARENT_LAYER = [E("dir", "x"), E("dir", "x/y"), E("file", "x/y/f", "parent"), E("dir", "etc"),
                E("file", "etc/passwd", "root:x:0:0:image\n"), E("dir", "dir"), E("file", "dir/kept", "k")]


class LayerSink:
    """Applies archives as layers (``apply_diff``: image import, registry pulls, commits) on a
    child of a parent layer that must stay untouched too."""

    def __init__(self, driver, victim: Path) -> None:
        from moorage.core.sdk.layers import differ_for

        self.driver = driver
        self.differ = differ_for(driver)
        self.parent = f"parent-{os.urandom(4).hex()}"
        driver.create(self.parent, None)
        self.differ.apply_diff(self.parent, None, io.BytesIO(build_tar(PARENT_LAYER, victim)))
        self.parent_state = self.parent_view()
        self.count = 0

    def parent_view(self) -> dict[str, tuple]:
        path = self.driver.get(self.parent)
        try:
            return tree_state(path)
        finally:
            self.driver.put(self.parent)

    def apply(self, data: bytes) -> None:
        self.count += 1
        layer = f"hostile-{self.count}-{os.urandom(4).hex()}"
        self.driver.create(layer, self.parent)
        try:
            self.differ.apply_diff(layer, self.parent, io.BytesIO(data))
        finally:
            self.driver.remove(layer)

    def check(self) -> None:
        assert self.parent_view() == self.parent_state, "the parent layer changed"


def check_hostile(sink, base: Path, entries: list[Entry]) -> bool:
    """Apply ``entries`` through ``sink`` with fresh canaries in ``base/victim`` and assert that
    nothing outside the target changed (the victim, what sits beside it, the sink's own
    invariant). Returns whether the archive was refused (``InvalidParameter``); any other
    error propagates."""
    import shutil

    from moorage.core.sdk.errors import InvalidParameter

    victim = base / "victim"
    shutil.rmtree(victim, ignore_errors=True)
    plant_canaries(victim)
    before, beside = tree_state(victim), sorted(os.listdir(base))
    refused = False
    try:
        sink.apply(build_tar(entries, victim))
    except InvalidParameter:
        refused = True  # fine, as long as nothing outside changed
    assert tree_state(victim) == before, "the archive changed the victim directory beside the target"
    assert sorted(os.listdir(base)) == beside, "the archive created something beside the target"
    sink.check()
    return refused
