"""The session-end check (tests/leftovers.py) finds what a run leaves, and only that run's."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import leftovers
import pytest
from conftest import unmount_below
from pyroute2 import IPRoute


def check(mode: str, token: str = "") -> leftovers.LeakCheck:
    started = leftovers.LeakCheck(token or uuid.uuid4().hex, mode)
    started.start()
    return started


def sleeper(token: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, leftovers.SESSION_VARIABLE: token})


def test_a_process_of_the_run_is_found_and_another_runs_is_not(tmp_path):
    run = check("session")
    ours, theirs = sleeper(run.token), sleeper(uuid.uuid4().hex)
    try:
        found = run.leftovers(tmp_path, exclude={os.getpid()}, grace=0)
        assert [line.split()[:2] for line in found] == [["process", str(ours.pid)]]
    finally:
        for p in (ours, theirs):
            p.kill()
            p.wait()
    assert run.leftovers(tmp_path, exclude={os.getpid()}, grace=5) == []


@pytest.mark.root
def test_a_mount_and_a_loop_device_below_the_runs_temporary_directory_are_found(tmp_path):
    run = check("session")
    point = tmp_path / "mnt"
    point.mkdir()
    image = tmp_path / "disk.img"
    subprocess.run(["truncate", "-s", "1M", str(image)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
        found = run.leftovers(tmp_path, exclude=set(), grace=0)
        assert f"mount {point} (tmpfs tmpfs)" in found
        assert f"loop device {loop} ({image})" in found
        # another run's temporary directory is not this run's
        assert run.leftovers(tmp_path / "elsewhere", exclude=set(), grace=0) == []
    finally:
        unmount_below(point)
        subprocess.run(["losetup", "-d", loop], check=False)
    assert run.leftovers(tmp_path, exclude=set(), grace=5) == []


@pytest.mark.root
def test_strict_mode_finds_new_links_and_cgroups_and_session_mode_does_not(tmp_path):
    strict, session = check("strict"), check("session")
    name = f"lft{uuid.uuid4().hex[:8]}"
    cgroup = leftovers.CGROUP_ROOT / "pids" / "moorage" / f"leftover-test-{uuid.uuid4().hex}"
    if not cgroup.parent.parent.is_dir():
        pytest.skip("no cgroup v1 pids hierarchy here")
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="veth", peer=f"{name}p")  # this kernel has no dummy links
    made_parent = not cgroup.parent.exists()
    cgroup.mkdir(parents=True)
    try:
        found = strict.leftovers(tmp_path, exclude=set(), grace=0)
        assert f"network link {name}" in found
        assert f"cgroup {cgroup}" in found
        assert session.leftovers(tmp_path, exclude=set(), grace=0) == []
    finally:
        cgroup.rmdir()
        if made_parent:
            try:
                cgroup.parent.rmdir()
            except OSError:
                pass  # a daemon's containers arrived meanwhile
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=name):
                ipr.link("del", index=index)
    assert not any(name in line or str(cgroup) in line for line in strict.leftovers(tmp_path, set(), grace=0))


def test_the_mode_is_strict_in_ci_and_can_be_chosen(monkeypatch):
    monkeypatch.delenv(leftovers.MODE_VARIABLE, raising=False)
    monkeypatch.setenv("CI", "true")
    assert leftovers.check_mode() == "strict"
    monkeypatch.delenv("CI")
    assert leftovers.check_mode() == "session"
    monkeypatch.setenv("CI", "true")
    assert leftovers.check_mode(nested=True) == "session"  # a run inside a test of another run
    monkeypatch.delenv("CI")
    monkeypatch.setenv(leftovers.MODE_VARIABLE, "off")
    assert leftovers.check_mode() == "off"
    monkeypatch.setenv(leftovers.MODE_VARIABLE, "loud")
    with pytest.raises(ValueError, match="strict, session or off"):
        leftovers.check_mode()
