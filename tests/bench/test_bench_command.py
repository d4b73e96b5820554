"""``moorage bench``, run as a researcher runs it (tiny workloads: figures belong to bench runs,
not to tests). What is checked is the shape of the results and that nothing is left behind."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path

from conftest import MOORAGE


def bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    out = tmp_path / f"{uuid.uuid4().hex[:6]}.json"
    done = subprocess.run([*MOORAGE, "bench", *args, "--json", str(out)], capture_output=True, text=True,
                          timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(out.read_text())


def leftovers() -> list[str]:
    """Mounts and loop devices of a `moorage bench` run (its scratch directories' prefix)."""
    ours = re.compile(r"/moorage-bench-(graph|exec|network)-")
    with open("/proc/self/mounts") as f:
        mounts = [line.split()[1] for line in f if ours.search(line.split()[1])]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return mounts + [line for line in loops.splitlines() if ours.search(line)]


def series(report: dict) -> dict[tuple[str, str], dict]:
    return {(r["driver"], r["operation"]): r for r in report["results"]}


def test_graph_with_btrfs_on_a_loop_image_a_table_json_and_a_plot(tmp_path):
    done, report = bench(tmp_path, "graph", "--drivers", "vfs,btrfs", "--size-mb", "2", "--files", "50",
                         "--repeat", "2", "--plot", str(tmp_path / "graph.png"))
    found = series(report)
    for driver in ("vfs", "btrfs"):
        for operation in ("import", "create on image", "changes", "commit 10 MB", "export"):
            s = found[(driver, operation)]
            assert s["n"] == 2 and s["unit"] == "ms" and len(s["samples"]) == 2
            assert min(s["samples"]) <= s["median"] <= s["p90"] == max(s["samples"])
    assert found[("floor", "import")]["n"] == 2 and report["floors"]["import"].startswith("tar -x")
    assert report["skipped"] == {}
    assert "median / p90" in done.stdout and "btrfs" in done.stdout and "floor" in done.stdout
    assert (tmp_path / "graph.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert leftovers() == []
    assert not list(Path("/tmp").glob("moorage-bench-graph-*/loop-btrfs.img"))


def test_an_unsupported_driver_is_skipped_with_its_reason(tmp_path):
    done, report = bench(tmp_path, "graph", "--drivers", "btrfs,vfs", "--no-loop-btrfs", "--size-mb", "1",
                         "--files", "10", "--repeat", "1", "--plot", str(tmp_path / "graph.svg"))
    assert "not on a btrfs filesystem" in report["skipped"]["btrfs"]
    assert {r["driver"] for r in report["results"]} == {"vfs", "floor"}
    assert "skipped btrfs:" in done.stdout
    assert b"<svg" in (tmp_path / "graph.svg").read_bytes()[:2000]


def test_exec_cycles_and_the_api_cycle_beside_unshare_chroot(tmp_path):
    done, report = bench(tmp_path, "exec", "--drivers", "native", "--cycles", "3", "--api-cycles", "2")
    found = series(report)
    # each driver's median beside its ratio to the floor's, for the operations the floor has
    ratio = found[("native", "API cycle")]["median"] / found[("floor", "API cycle")]["median"]
    shown = re.search(r"API cycle +│ +[\d.]+ / [\d.]+ \(([\d.]+)x\)", done.stdout)
    assert shown and abs(float(shown[1]) - ratio) <= 0.11, done.stdout  # the JSON's medians are rounded
    assert not re.search(r"│ start +│ +[\d.]+ / [\d.]+ \(", done.stdout)  # the floor has no start alone
    assert {op for d, op in found if d == "native"} == {"start", "wait", "release", "start+wait+release",
                                                        "API cycle"}
    assert found[("native", "API cycle")]["n"] == 2
    assert found[("floor", "start+wait+release")]["n"] == 3 and "unshare" in report["floors"]["API cycle"]
    assert leftovers() == []


def test_a_third_party_network_driver_is_measured_like_a_builtin(tmp_path, parent_nic):
    config = tmp_path / "bench.toml"
    config.write_text(f'[network.macvlan]\nparent = "{parent_nic}"\nsubnet = "172.29.3.0/24"\n')
    _, report = bench(tmp_path, "network", "--drivers", "none,macvlan", "--host-network", "--config", str(config),
                      "--cycles", "3", "--api-cycles", "2")
    found = series(report)
    for driver in ("none", "macvlan"):
        assert {op for d, op in found if d == driver} == {"join", "leave", "release", "API cycle"}
    assert report["skipped"] == {}
    macvlans = json.loads(subprocess.run(["ip", "-j", "link", "show", "type", "macvlan"], capture_output=True,
                                         text=True, check=True).stdout or "[]")
    assert [m["ifname"] for m in macvlans if m.get("link") == parent_nic] == []  # nothing left on the host


def test_an_unknown_driver_lists_the_registered_ones(tmp_path):
    done = subprocess.run([*MOORAGE, "bench", "graph", "--drivers", "zfs"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1 and "graph driver 'zfs' is not available (registered: " in done.stderr
