"""Resolving ``User`` in the container's /etc/passwd and /etc/group."""

from __future__ import annotations

import os
import stat

import pytest

from moorage.core.sdk.errors import InvalidParameter
from moorage.drivers.exec.common.users import MAX_BYTES, Identity, resolve


@pytest.fixture
def rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n# comment\nodd:x:zz:1::/:/bin/sh\n")
    (tmp_path / "etc" / "group").write_text("root:x:0:\nwww:x:33:\nlog:x:4:www,other\nstaff:x:50:www\n")
    return tmp_path


@pytest.mark.parametrize(("user", "identity"), [
    ("", Identity(0, 0, ())),
    ("root", Identity(0, 0, ())),
    ("www", Identity(33, 33, (4, 50))),
    ("33", Identity(33, 33, (4, 50))),
    ("www:log", Identity(33, 4, (50,))),
    ("www:7", Identity(33, 7, (4, 50))),
    ("4242", Identity(4242, 0, ())),
    ("4242:4242", Identity(4242, 4242, ())),
])
def test_resolve(rootfs, user, identity):
    assert resolve(rootfs, user) == identity


@pytest.mark.parametrize(("user", "message"), [
    ("nobody", "Unable to find user nobody"),
    ("www:nogroup", "Unable to find group nogroup"),
    ("odd", "malformed"),
])
def test_refused(rootfs, user, message):
    with pytest.raises(InvalidParameter, match=message):
        resolve(rootfs, user)


def test_no_passwd_file(tmp_path):
    assert resolve(tmp_path, "1000") == Identity(1000, 0, ())
    with pytest.raises(InvalidParameter):
        resolve(tmp_path, "root")


# -- hostile images: the files are resolved in the rootfs, regular files only, bounded ---------

def test_fifo_passwd_is_refused_without_hanging(rootfs):
    (rootfs / "etc" / "passwd").unlink()
    os.mkfifo(rootfs / "etc" / "passwd")
    with pytest.raises(InvalidParameter, match="not a regular file"):
        resolve(rootfs, "www")


def test_passwd_linked_to_a_device_is_refused(rootfs):
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    (rootfs / "dev").mkdir()
    os.mknod(rootfs / "dev" / "zero", 0o666 | stat.S_IFCHR, os.makedev(1, 5))
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("/dev/zero")
    with pytest.raises(InvalidParameter, match="not a regular file"):
        resolve(rootfs, "www")


def test_passwd_link_never_leads_out_of_the_rootfs(rootfs, tmp_path_factory):
    outside = tmp_path_factory.mktemp("host") / "passwd"
    outside.write_text("www:x:99:99::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to("../../../../../../../.." + str(outside))
    with pytest.raises(InvalidParameter, match="Unable to find user www"):
        resolve(rootfs, "www")  # the link resolves inside the rootfs, where nothing is


def test_huge_group_file_is_refused(rootfs):
    with open(rootfs / "etc" / "group", "wb") as f:
        f.truncate(MAX_BYTES + 1)
    with pytest.raises(InvalidParameter, match="larger than"):
        resolve(rootfs, "www")
