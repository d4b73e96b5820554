"""The network contract suite against this driver: the one command moorage gives every driver
package, run on a dummy interface made for the test as the parent NIC (the ``parent_nic`` fixture
of moorage's pytest plugin)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="macvlan interfaces need root")


def options_file(path, parent: str) -> str:
    net = f"172.31.{random.randint(0, 255)}"
    path.write_text(f'[network.macvlan]\nparent = "{parent}"\nsubnet = "{net}.0/24"\n'
                    f'range = "{net}.64/26"\ngateway = "{net}.1"\n')
    return str(path)


def test_network_contract(parent_nic, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
                           "--pyargs", "moorage.core.testing", "--moorage-driver", "network=macvlan",
                           "--moorage-driver-options", options_file(tmp_path / "macvlan.toml", parent_nic)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    print(done.stdout[-6000:], done.stderr[-3000:])
    assert done.returncode == 0
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    # the only checks skipped are those of port publishing and of drivers without isolation
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("does not publish ports" in line or "macvlan isolates containers" in line for line in skips), skips
