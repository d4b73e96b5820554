"""The kill -9 soak (bench/soak.py), short: 20 SIGKILLs of a daemon under a mixed workload (on a
bridge of its own, with published ports), with every check after every restart, orphans
included, and with the ledger's caps set low enough to be reached. The 200-kill figure is in
docs/reliability.md."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import exec_driver_unsupported

ROOT = Path(__file__).resolve().parents[2]
#: low enough for 20 kills to reach them (bench/soak.py's own are 40 and 60)
MAX_CONTAINERS, MAX_IMAGES = 10, 12

pytestmark = [
    pytest.mark.skipif(exec_driver_unsupported("native") is not None, reason="the soak daemon uses the native driver"),
    pytest.mark.skipif(shutil.which("docker-registry") is None, reason="the soak pulls from a docker-registry"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="the soak's bridge driver needs nft"),
]


@pytest.mark.timeout(900)
def test_twenty_kills_leave_every_answered_request_whole():
    argv = [sys.executable, str(ROOT / "bench" / "soak.py"), "--kills", "20", "--seed", "7", "--json",
            "--max-containers", str(MAX_CONTAINERS), "--max-images", str(MAX_IMAGES)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=880, cwd=ROOT)
    assert done.stdout.strip(), done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["checks"] == 20, result
    assert result["answered"] >= 20, result
    assert result["violations"] == [], (result["violations"], result["log_tail"])
    # the network was exercised: containers on the bridge, published ports answering after restarts
    assert result["most_veths_on_bridge"] >= 1 and result["most_published_ports"] >= 1, result
    assert result["port_checks"] >= 1, result
    # the caps were reached: the oldest containers (rm -f) and tags (rmi) were removed by answered
    # requests, checked like the others, and kept the ledger bounded (an operation adds at most
    # one, and the request in flight at a kill one more)
    assert result["trimmed_containers"] >= 1 and result["trimmed_images"] >= 1, result
    assert result["most_ledger_containers"] <= MAX_CONTAINERS + 2, result
    assert result["most_ledger_images"] <= MAX_IMAGES + 1 + 2, result  # busybox is not counted in the cap
