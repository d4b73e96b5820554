"""Hostile archives and the commit race through the real endpoints of a real daemon, on every
graph driver (btrfs with the daemon's root on a loop-mounted btrfs): ``images/create?fromSrc=-``
(image import), ``POST /build`` (the context itself, and ``ADD x.tar``), and ``commit`` /
``changes`` of a running container that swaps a directory for a symlink to the host.

Each archive aims at a victim directory of this test (absolute and relative paths, symlinks
to it and to ``/``); afterwards the victim must be exactly as it was.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
import uuid

import pytest
from conftest import CONTAINER_CONFIG, busybox_daemon_in

from moorage.core.testing.archives import ISSUE_CASES, Entry, build_tar, plant_canaries, tree_state

SECRET = "SECRET-" + uuid.uuid4().hex


@pytest.fixture(scope="module", params=["vfs", "overlay", "btrfs"])
def graph_daemon(request, tmp_path_factory, busybox_tar):
    base = tmp_path_factory.mktemp(f"hostile-{request.param}")
    flags = []
    if request.param == "btrfs":
        flags = ["-g", str(request.getfixturevalue("btrfs_mount") / f"root-{uuid.uuid4().hex[:8]}")]
    with busybox_daemon_in(base, busybox_tar, CONTAINER_CONFIG.format(graph=request.param, exec="native"),
                           flags) as d:
        yield d


@pytest.fixture
def victim(tmp_path):
    v = tmp_path / f"victim-{uuid.uuid4().hex[:6]}"
    plant_canaries(v)
    (v / "etc" / "passwd").write_text(SECRET)
    return v


def last_message(text: str) -> dict:
    decoder, last = json.JSONDecoder(), {}
    text = text.strip()
    while text:
        last, end = decoder.raw_decode(text)
        text = text[end:].strip()
    return last


def context(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def with_context(entries: list[Entry], victim) -> bytes:
    """A build context holding ``entries`` followed by a Dockerfile."""
    return build_tar([*entries, Entry("file", "Dockerfile", "FROM busybox\n")], victim)


@pytest.mark.parametrize("case", range(len(ISSUE_CASES)))
def test_import_of_a_hostile_archive_changes_nothing_outside(graph_daemon, victim, case):
    before = tree_state(victim)
    with graph_daemon.client() as api:
        answer = api.post("/images/create", params={"fromSrc": "-", "repo": f"hostile{case}"},
                          content=build_tar(ISSUE_CASES[case], victim))
        assert answer.status_code in (200, 400), answer.text
        if answer.status_code == 400 or "error" in last_message(answer.text):
            # refused with a plain message, and nothing half-registered under the name
            assert api.get(f"/images/hostile{case}/json").status_code == 404
        assert api.get("/_ping").status_code == 200
    assert tree_state(victim) == before


@pytest.mark.parametrize("case", range(len(ISSUE_CASES)))
def test_build_with_a_hostile_context_changes_nothing_outside(graph_daemon, victim, case):
    before = tree_state(victim)
    with graph_daemon.client(timeout=120) as api:
        answer = api.post("/build", params={"rm": "1"}, content=with_context(ISSUE_CASES[case], victim))
    # a context refused before any output is a 400 with the plain message (Docker 0.6: 500)
    assert answer.status_code in (200, 400, 500), answer.text
    if answer.status_code != 200:
        assert "Internal Server Error" not in answer.text and "Traceback" not in answer.text, answer.text
    assert tree_state(victim) == before, f"the build context wrote outside: {answer.text}"


@pytest.mark.parametrize("case", range(len(ISSUE_CASES)))
def test_build_adding_a_hostile_tar_changes_nothing_outside(graph_daemon, victim, case):
    before = tree_state(victim)
    body = context({"Dockerfile": b"FROM busybox\nADD x.tar /\n", "x.tar": build_tar(ISSUE_CASES[case], victim)})
    with graph_daemon.client(timeout=120) as api:
        answer = api.post("/build", params={"rm": "1"}, content=body)
    assert answer.status_code == 200, answer.text
    assert tree_state(victim) == before, f"ADD x.tar wrote outside: {answer.text}"


def test_commit_and_changes_of_a_container_swapping_a_directory_for_a_host_symlink(graph_daemon, victim):
    """The container flips /etc2 between a directory and a symlink to the victim (a host path it
    cannot see, which only a daemon following the link would reach) while commits and change
    lists are taken; no commit may carry the victim's secret, no change list its names."""
    script = (f"mkdir /etc2; echo inside > /etc2/passwd; while :; do mv /etc2 /etc3; ln -s {victim} /etc2; "
              "rm /etc2; mv /etc3 /etc2; done")
    with graph_daemon.client(timeout=120) as api:
        cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["/bin/sh", "-c", script]}).json()["Id"]
        made = []
        try:
            assert api.post(f"/containers/{cid}/start").status_code == 204
            time.sleep(0.5)
            deadline = time.monotonic() + 5
            commits = 0
            while time.monotonic() < deadline:
                names = [c["Path"] for c in api.get(f"/containers/{cid}/changes").json() or []]
                assert not any(n.endswith(("/file", "/dir", "/sub")) for n in names), names
                answer = api.post("/commit", params={"container": cid})
                assert answer.status_code == 201, answer.text
                image = answer.json()["Id"]
                probe = api.post("/containers/create", json={"Image": image, "Cmd": ["true"]}).json()["Id"]
                made.append(probe)
                for resource in ("/etc2", "/etc3"):
                    copied = api.post(f"/containers/{probe}/copy", json={"Resource": resource})
                    assert SECRET.encode() not in copied.content
                commits += 1
            assert commits >= 2
        finally:
            api.post(f"/containers/{cid}/kill")
            for c in [cid, *made]:
                api.delete(f"/containers/{c}")
    assert tree_state(victim)  # still there
