"""The network contract suite against this driver: the one command moorage gives every driver
package, run on a dummy interface made for the test as the parent NIC."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid

import pytest
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="macvlan interfaces need root")


@pytest.fixture
def parent():
    """A dummy NIC, up, with no address: the containers' macvlans hang off it. On a kernel
    without the dummy driver (CONFIG_DUMMY unset) one end of a veth pair stands in for it."""
    name = f"mvp{uuid.uuid4().hex[:8]}"
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=name, kind="dummy")
        except NetlinkError:
            ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")
            ipr.link("set", index=ipr.link_lookup(ifname=f"{name}p")[0], state="up")
        ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    yield name
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):  # its macvlans and its peer go with it
            ipr.link("del", index=index)


def options_file(path, parent: str) -> str:
    net = f"172.31.{random.randint(0, 255)}"
    path.write_text(f'[network.macvlan]\nparent = "{parent}"\nsubnet = "{net}.0/24"\n'
                    f'range = "{net}.64/26"\ngateway = "{net}.1"\n')
    return str(path)


def test_network_contract(parent, tmp_path):
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
                           "--pyargs", "moorage.core.contract", "--moorage-driver", "network=macvlan",
                           "--moorage-driver-options", options_file(tmp_path / "macvlan.toml", parent)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)
    print(done.stdout[-6000:], done.stderr[-3000:])
    assert done.returncode == 0
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "error" not in summary
    # the only checks skipped are those of port publishing and of drivers without isolation
    skips = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert all("does not publish ports" in line or "macvlan isolates containers" in line for line in skips), skips
