"""The shipped systemd units (api/systemd/): systemd's own checker accepts them, and they say
what the daemon relies on (delegation, containers outliving the daemon, the API socket)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "api" / "systemd"


def settings(name: str) -> dict[str, str]:
    text = (UNITS / name).read_text()
    return dict(re.findall(r"^(\w+)=(.*)$", text, re.M))


def test_service_delegates_and_keeps_containers():
    service = settings("moorage.service")
    assert service["Delegate"] == "yes"
    assert service["KillMode"] == "process"
    assert service["ExecStart"].split()[1:] == ["daemon"]
    assert service["Requires"] == "moorage.socket"


def test_socket_is_the_daemons_default_socket():
    from moorage.core.kernel.config import load

    socket = settings("moorage.socket")
    default = load(None, {}).daemon.hosts
    assert [f"unix://{socket['ListenStream']}"] == [h.replace("/var/run/", "/run/") for h in default]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify(tmp_path):
    moorage = Path(sys.executable).parent / "moorage"
    for name in ("moorage.service", "moorage.socket"):
        text = (UNITS / name).read_text().replace("/usr/local/bin/moorage", str(moorage))
        (tmp_path / name).write_text(text)
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", "moorage.service", "moorage.socket"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    # systemd before 254 does not know DelegateSubgroup= and ignores it (the daemon moves itself)
    complaints = [line for line in done.stderr.splitlines() if "DelegateSubgroup" not in line and line.strip()]
    assert not complaints, done.stderr
