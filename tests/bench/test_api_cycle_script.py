"""bench/api_cycle.py, issue 28's benchmark script: ``--quick`` runs it once as a smoke test of
the script (the figures of a test run say nothing and are not checked), and its verdict on
given figures is checked directly."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "bench" / "api_cycle.py"


def load_script():
    spec = importlib.util.spec_from_file_location("api_cycle_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_runs_both_networks_and_prints_the_ratios(tmp_path):
    # in a network namespace of its own: the bench's bridge never meets the host's links
    done = subprocess.run(["unshare", "--net", sys.executable, str(SCRIPT), "--quick", "--network", "none",
                           "--network", "bridge"], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert re.search(r"unshare \+ chroot \(the floor\) +median +[\d.]+ ms", out)
    for network in ("none", "bridge"):
        ratio = rf"ratio overlay \+ native \+ {network} to the floor: [\d.]+x \(target [\d.]+x: (met|MISSED)\)"
        assert re.search(ratio, out), out
        assert re.search(rf"overlay \+ native \+ {network}, median per request: create [\d.]+ ms, start", out)
    assert re.search(r"network driver share \(bridge - none\): -?[\d.]+ ms", out)
    assert "load average" in out


def test_the_verdict_names_each_missed_target(capsys):
    script = load_script()
    assert script.check("overlay", "native", {"none": 11.9, "bridge": 17.9}, 4.0) == []
    missed = script.check("overlay", "native", {"none": 12.4, "bridge": 19.0}, 4.0)
    assert missed == ["overlay + native + none: 3.10x the floor (target 3.0x)",
                      "overlay + native + bridge: 4.75x the floor (target 4.5x)",
                      "overlay + native: the bridge's share 6.6 ms (target 6.0 ms)"]
    assert "3.10x (target 3.0x: MISSED)" in capsys.readouterr().out


def test_a_missed_target_ends_the_script_with_an_error(monkeypatch):
    script = load_script()
    cycles = [script.Cycle(0.004, 0.01, 0.001, 0.002)] * 5  # 17 ms against a 4 ms floor
    monkeypatch.setattr(script, "interleaved", lambda *a: ([0.004] * 5, {"none": cycles}))
    monkeypatch.setattr(script, "make_busybox_rootfs", lambda path: path)
    monkeypatch.setattr(script, "tar_directory", lambda rootfs, tar: tar)
    monkeypatch.setattr(sys, "argv", ["api_cycle.py", "--cycles", "5"])
    try:
        script.main()
    except SystemExit as exc:
        assert "overlay + native + none: 4.25x the floor (target 3.0x)" in str(exc)
    else:
        raise AssertionError("a missed target must end the script with an error")
    monkeypatch.setattr(sys, "argv", ["api_cycle.py", "--cycles", "5", "--no-check"])
    script.main()  # --no-check: the same figures only printed
