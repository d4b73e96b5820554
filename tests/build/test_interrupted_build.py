"""A daemon SIGKILLed in the middle of a build: after the restart, no intermediate container of
that build remains (plugins/builder/interrupted.py), while what finished builds made is intact."""

from __future__ import annotations

import os
import threading
import uuid

import httpx
import pytest
from conftest import CONTAINER_CONFIG, busybox_daemon_in, exec_driver_unsupported

from moorage.core.sdk.mounts import mounts_below

from .helpers import BUILD_TIMEOUT, build, built_id, container_ids, context_tar, dockerfile, run_in

pytestmark = pytest.mark.skipif(exec_driver_unsupported("native") is not None,
                                reason="the build's RUN steps need the native exec driver")


@pytest.fixture
def daemon(tmp_path_factory, busybox_tar):
    base = tmp_path_factory.mktemp(f"killbuild-{uuid.uuid4().hex[:6]}")
    with busybox_daemon_in(base, busybox_tar, CONTAINER_CONFIG.format(graph="overlay", exec="native")) as d:
        yield d


def start_build_until(daemon, context: bytes, running_steps: int, **params) -> tuple[threading.Thread, list[str]]:
    """Start a build in a thread and return once its output says ``running_steps`` RUN steps
    have started (the last one still runs); the thread ends when the daemon dies."""
    lines: list[str] = []
    reached = threading.Event()

    def follow() -> None:
        try:
            with daemon.client(timeout=BUILD_TIMEOUT) as client, \
                    client.stream("POST", "/build", params=params, content=context) as answer:
                for line in answer.iter_lines():
                    lines.append(line)
                    if sum(" ---> Running in " in seen for seen in lines) >= running_steps:
                        reached.set()
        except httpx.TransportError:
            pass  # the daemon was killed under it
        finally:
            reached.set()

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert reached.wait(BUILD_TIMEOUT)
    assert sum(" ---> Running in " in line for line in lines) == running_steps, lines
    return thread, lines


def test_build_killed_in_a_run_step_leaves_no_intermediate_container(daemon):
    tag = f"kb{uuid.uuid4().hex[:8]}"
    # finished builds: one keeps its intermediate containers (no rm), one removed them
    kept = build(daemon, context_tar({"Dockerfile": dockerfile("FROM busybox", "RUN echo a > /a",
                                                               "RUN echo b > /b")}), t=f"{tag}-kept", rm=0)
    assert "Successfully built" in kept.text, kept.text
    kept_containers = container_ids(daemon)
    assert len(kept_containers) == 2, kept.text
    removed = build(daemon, context_tar({"Dockerfile": dockerfile("FROM busybox", "RUN echo c > /c")}),
                    t=f"{tag}-rm", rm=1)
    assert "Successfully built" in removed.text, removed.text
    images = {name: built_id(answer.text) for name, answer in ((f"{tag}-kept", kept), (f"{tag}-rm", removed))}

    # a build killed while its second RUN step runs: its first step's container has exited,
    # its second still runs
    context = context_tar({"Dockerfile": dockerfile("FROM busybox", "RUN echo d > /d", "RUN sleep 1000")})
    thread, lines = start_build_until(daemon, context, 2, t=f"{tag}-killed", rm=1)
    interrupted = container_ids(daemon) - kept_containers
    assert len(interrupted) == 2, lines
    with daemon.client() as client:
        pids = [client.get(f"/containers/{cid}/json").json()["State"]["Pid"] for cid in interrupted]
    sleeper = max(pids)
    assert sleeper > 0
    # and what builds killed earlier left: one being set up, one without a lock file yet
    (daemon.root / "builder" / ".new-killed" / "context").mkdir(parents=True)
    (daemon.root / "builder" / "build-killed" / "context").mkdir(parents=True)
    daemon.kill()
    thread.join(30)
    daemon.start()

    assert container_ids(daemon) == kept_containers, "an interrupted build's intermediate container remains"
    assert not os.path.exists(f"/proc/{sleeper}"), "the interrupted RUN step's process still runs"
    assert not [p for p in mounts_below(daemon.root) if any(cid in p for cid in interrupted)]
    assert not [entry.name for entry in (daemon.root / "builder").iterdir()], "a build directory remains"
    with daemon.client() as client:
        assert client.get(f"/images/{tag}-killed/json").status_code == 404
        for name, image_id in images.items():
            answer = client.get(f"/images/{name}/json")
            assert answer.status_code == 200 and answer.json()["id"].startswith(image_id), answer.text
    code, output, _ = run_in(daemon, f"{tag}-kept", ["cat", "/a", "/b"])
    assert (code, output) == (0, "a\nb\n")
    code, output, _ = run_in(daemon, f"{tag}-rm", ["cat", "/c"])
    assert (code, output) == (0, "c\n")
    # the builder works on after the sweep
    again = build(daemon, context_tar({"Dockerfile": dockerfile("FROM busybox", "RUN echo e > /e")}),
                  t=f"{tag}-after", rm=1)
    assert "Successfully built" in again.text, again.text
    assert container_ids(daemon) == kept_containers
