"""ADD's copies of context files and directories write by descriptor inside the container's root:
a destination through an absolute symlink means the container's own path, an existing symlink
is replaced (a file) or resolved inside the root (a directory), never followed onto the host."""

from __future__ import annotations

import os

import pytest

from moorage.core.sdk.errors import InvalidParameter
from moorage.plugins.builder.add import add_local, copy_entry


def test_add_of_a_file_and_a_directory_stays_in_the_root(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host")
    context, root = tmp_path / "context", tmp_path / "root"
    (context / "tree" / "sub").mkdir(parents=True)
    (context / "tree" / "sub" / "f").write_text("from context")
    (context / "file").write_text("file")
    (root / "usr" / "lib").mkdir(parents=True)
    os.symlink("/usr/lib", root / "lib")            # merged-usr: the container's own /usr/lib
    os.symlink(str(outside), root / "host")         # a link that means the host to a path walk
    os.symlink(str(outside / "keep"), root / "victim")
    add_local(context / "tree", root, "tree", "/lib")
    assert (root / "usr" / "lib" / "sub" / "f").read_text() == "from context"
    with pytest.raises(InvalidParameter):  # the link dangles inside the root: refused, not followed
        add_local(context / "tree", root, "tree", "/host/x")
    copy_entry(context / "file", root, "/victim", mode=0o600)
    assert not (root / "victim").is_symlink() and (root / "victim").read_text() == "file"
    assert sorted(os.listdir(outside)) == ["keep"] and (outside / "keep").read_text() == "host"
