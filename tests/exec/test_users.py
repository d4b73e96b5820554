"""Resolving ``User`` in the container's /etc/passwd and /etc/group."""

from __future__ import annotations

import pytest

from moorage.core.errors import InvalidParameter
from moorage.drivers.exec.common.users import Identity, resolve


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
