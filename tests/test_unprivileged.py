"""The tests that need no root pass without it: ``tests/core`` and ``tests/test_docs.py`` run as
``nobody`` (a test that needs root is marked so, or takes a root fixture, and is skipped there)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: The system's interpreter: the venv's own may live below a home only its owner reads.
SYSTEM_PYTHON = "/usr/bin/python3"


def as_nobody(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "nobody", "--", *args], capture_output=True, text=True, timeout=600,
                          env=env, cwd=cwd)


@pytest.mark.root
def test_core_and_docs_tests_pass_as_nobody():
    if not os.path.exists(SYSTEM_PYTHON) or shutil.which("runuser") is None:
        pytest.skip(f"needs {SYSTEM_PYTHON} and runuser")
    version = subprocess.run([SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    if version != str(tuple(sys.version_info[:2])):
        pytest.skip(f"{SYSTEM_PYTHON} is {version}, the venv's Python {sys.version_info[:2]}: its packages "
                    "would not load")
    packages = sysconfig.get_paths()["purelib"]
    reach = as_nobody("test", "-r", str(ROOT / "tests" / "core"), "-a", "-r", packages, "-a", "-x", SYSTEM_PYTHON)
    if reach.returncode != 0:
        pytest.skip(f"nobody cannot read this checkout or {packages} (a parent directory is private)")
    scratch = Path(tempfile.mkdtemp(prefix="moorage-nobody-"))
    try:
        nobody = pwd.getpwnam("nobody")
        os.chmod(scratch, 0o755)
        os.chown(scratch, nobody.pw_uid, nobody.pw_gid)
        site = scratch / "site"
        site.mkdir()
        # the venv's packages (moorage's editable install among them) for nobody's interpreter and
        # for every Python it starts (`python -m moorage.api.cli.main ...`)
        (site / "sitecustomize.py").write_text(f"import site\nsite.addsitedir({packages!r})\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(scratch), "PYTHONPATH": str(site),
               "LANG": "C.UTF-8"}
        done = as_nobody(SYSTEM_PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q",
                         f"--basetemp={scratch / 'tmp'}", "tests/core", "tests/test_docs.py", env=env)
        summary = done.stdout.strip().splitlines()[-1:] or [done.stderr]
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert " passed" in summary[0] and "failed" not in summary[0], summary
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
