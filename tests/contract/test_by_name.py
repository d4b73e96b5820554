"""``pytest --pyargs moorage.core.testing --moorage-driver FAMILY=NAME``: the command a driver
author runs, run here in a subprocess as they run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def contract(tmp_path: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs",
                           "--pyargs", "moorage.core.testing", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)


def test_runs_the_named_familys_suite_only(tmp_path):
    result = contract(tmp_path, "--moorage-driver", "network=none")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "deselected" in summary and "failed" not in summary, summary


def test_options_come_from_the_config_file_and_are_validated(tmp_path):
    options = tmp_path / "options.toml"
    options.write_text('[network.none]\nbogus = 1\n')
    result = contract(tmp_path, "--moorage-driver", "network=none", "--moorage-driver-options", str(options))
    assert result.returncode != 0
    assert "bogus" in result.stderr and str(options) in result.stderr, result.stderr


def test_unsupported_driver_is_skipped_with_its_reason(tmp_path):
    # btrfs on a root that is not btrfs: the driver's own probe says why
    result = contract(tmp_path, "--moorage-driver", "graph=btrfs", "-k", "test_status or test_create_empty")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "graph driver btrfs is not supported here" in result.stdout and "not on a btrfs" in result.stdout
    assert "2 skipped" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    ((), "add --moorage-driver FAMILY=NAME"),
    (("--moorage-driver", "graph=no-such-driver"), "registered: "),
    (("--moorage-driver", "storage=vfs"), "expected FAMILY=NAME"),
])
def test_usage_errors(tmp_path, args, message):
    result = contract(tmp_path, *args)
    assert result.returncode == 4 and message in result.stderr, result.stderr


@pytest.mark.parametrize(("driver", "select"), [
    ("exec=native", "test_exit_status"),
    ("registry=v2", "test_push_then_pull_round_trip"),
    ("graph=overlay", "test_create_empty or test_layers_survive"),
])
def test_every_family_runs_by_name(tmp_path, driver, select):
    result = contract(tmp_path, "--moorage-driver", driver, "-k", select)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
