"""The docker SDK for Python 7.1.0's own integration suite as a judge of today's API.

docker-py's code is not in this repository: its ``tests/`` are taken at run time from a git
checkout of docker/docker-py at tag 7.1.0 (``MOORAGE_DOCKER_PY``, default the mirror this
project's machines keep; the package's sdist carries no tests), and the SDK itself from
``.venv/sdk7`` (``bash bootstrap test`` installs ``docker[ssh,websockets]==7.1.0``, pytest and
pytest-timeout there: the extras are what its tests import), a directory of its own so that
its pins move nothing of the project's.

The selected files run against a busybox daemon with busybox tagged ``alpine:3.10``,
``busybox`` and ``hello-world`` (the names the suite uses), each test capped by pytest-timeout.
The pass count of each file is asserted against a floor: the count reached when the floor was
set (docs/api.md lists the failures and their reasons), less two for the two larger files, whose
timing-sensitive tests (waits and stops with one-second timeouts) lost one under the whole
suite's load on two cores; losing more than that is a regression.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / ".venv" / "sdk7"
DOCKER_PY = Path(os.environ.get("MOORAGE_DOCKER_PY", "/work/.mirror/docker+docker-py/repo"))
TAG = "7.1.0"
#: file -> the least number of its tests that must pass (docs/api.md, "The docker SDK 7.1.0")
FLOORS = {
    "api_client_test.py": 5,
    "errors_test.py": 0,
    "regression_test.py": 5,
    "api_container_test.py": 48 - 2,  # 48 alone, 47 once under the whole suite's load
    "models_containers_test.py": 24 - 2,
}
PER_TEST_TIMEOUT = 30


def checkout_tests(dest: Path) -> None:
    """docker-py's ``tests`` package at ``TAG`` into ``dest`` (``git archive``, nothing else)."""
    if not (DOCKER_PY / "HEAD").exists() and not (DOCKER_PY / ".git").exists():
        pytest.skip(f"no docker-py checkout at {DOCKER_PY} (set MOORAGE_DOCKER_PY)")
    archive = subprocess.run(["git", "-C", str(DOCKER_PY), "archive", TAG, "tests"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"{DOCKER_PY} has no tag {TAG}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def tag_images(daemon) -> None:
    with daemon.client() as client:
        for repo, tag in (("alpine", "3.10"), ("alpine", "latest"), ("hello-world", "latest")):
            answer = client.post("/images/busybox/tag", params={"repo": repo, "tag": tag, "force": 1})
            assert answer.status_code in (200, 201), answer.text


def failures(report: Path) -> list[str]:
    """``file::test: first line of the failure`` of each failed test in pytest's junit XML."""
    out = []
    for case in ET.parse(report).getroot().iter("testcase"):
        for child in case:
            if child.tag in ("failure", "error"):
                message = (child.get("message") or "").splitlines()[0][:200] if child.get("message") else ""
                out.append(f"{case.get('classname', '').split('.')[-2]}::{case.get('name')}: {message}")
    return out


def pass_counts(report: Path) -> dict[str, tuple[int, int]]:
    """file -> (passed, run) from pytest's junit XML."""
    counts: dict[str, list[int]] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = case.get("classname", "").split(".")[-2] + ".py" if "." in case.get("classname", "") else "?"
        kinds = {child.tag for child in case}
        if "skipped" in kinds:
            continue
        entry = counts.setdefault(name, [0, 0])
        entry[1] += 1
        if not kinds & {"failure", "error"}:
            entry[0] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


@pytest.mark.timeout(PER_TEST_TIMEOUT * 40)
@pytest.mark.parametrize("exec_driver", ["native"], indirect=True)
def test_docker_sdk_7_integration_suite(busybox_daemon, tmp_path):
    if not (SDK / "docker").is_dir():
        pytest.skip(f"no docker SDK 7.1.0 in {SDK} (bash bootstrap test installs it)")
    checkout_tests(tmp_path)
    tag_images(busybox_daemon)
    report = tmp_path / "report.xml"
    env = {**os.environ, "PYTHONPATH": f"{SDK}:{tmp_path}", "DOCKER_HOST": f"unix://{busybox_daemon.sock}",
           "DOCKER_TEST_API_VERSION": "1.47", "HOME": str(tmp_path),
           "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"}  # the project's own plugins stay out
    env.pop("DOCKER_CERT_PATH", None)
    env.pop("DOCKER_TLS_VERIFY", None)
    files = [f"tests/integration/{name}" for name in FLOORS]
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "pytest_timeout",
                           f"--timeout={PER_TEST_TIMEOUT}", "-q", "-o", "addopts=", f"--junitxml={report}",
                           "--rootdir", str(tmp_path), *files], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=PER_TEST_TIMEOUT * 38)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    counts = pass_counts(report)
    print("\n".join(f"{name}: {p}/{n}" for name, (p, n) in sorted(counts.items())))
    print("\n".join(failures(report)))
    short = {name: counts.get(name, (0, 0)) for name, floor in FLOORS.items() if counts.get(name, (0, 0))[0] < floor}
    assert not short, f"below the floor {FLOORS}: {short}"
