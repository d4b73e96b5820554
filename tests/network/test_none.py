"""The ``none`` driver joins after the start: the command may already be gone, whatever the
kernel answers for its namespace then."""

from __future__ import annotations

import errno
import os

import pytest

from moorage.core.sdk.driver import DriverContext
from moorage.drivers.network import none


@pytest.mark.parametrize("error", [FileNotFoundError(errno.ENOENT, "gone"), ProcessLookupError(errno.ESRCH, "reaped"),
                                   PermissionError(errno.EACCES, "exiting")])
def test_a_command_already_gone_joins_with_its_ports_exposed(tmp_path, monkeypatch, error):
    driver = none.NoneDriver(DriverContext.standalone(none.NoneDriver, tmp_path))
    real_stat = os.stat

    def stat(path, *args, **kwargs):
        if str(path).startswith("/proc/4242/"):
            raise error
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(none.os, "stat", stat)
    endpoint = driver.join("c" * 64, 4242, {"80/tcp": []})
    assert endpoint.ports == {"80/tcp": None}
