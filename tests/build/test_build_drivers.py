"""Builds use the daemon's configured drivers: another graph driver, and the network driver's
view of the world in RUN steps."""

from __future__ import annotations

import uuid

from conftest import import_image

from .helpers import build, built_id, context_tar, run_in

CONFIG = '[graph]\ndriver = "{graph}"\n[exec]\ndriver = "native"\n[network]\ndriver = "{network}"\n'


def test_build_on_vfs_with_host_networking(daemon_factory, busybox_tar, http_dir):
    root, base = http_dir
    token = uuid.uuid4().hex
    (root / "token").write_text(token + "\n")
    daemon = daemon_factory(CONFIG.format(graph="vfs", network="host"))
    import_image(daemon, busybox_tar)
    with daemon.client() as client:
        assert client.get("/info").json()["Driver"] == "vfs"
    body = context_tar({"Dockerfile": f"FROM busybox\nADD f /f\nRUN wget -q -O /got {base}/token\n", "f": "f\n"})
    answer = build(daemon, body)
    assert answer.status_code == 200 and "Successfully built" in answer.text, answer.text
    code, output, _ = run_in(daemon, built_id(answer.text), ["cat", "/f", "/got"])
    assert (code, output) == (0, f"f\n{token}\n")


def test_run_without_networking_cannot_reach_the_host(busybox_daemon, http_dir):
    _, base = http_dir
    body = context_tar({"Dockerfile": f"FROM busybox\nRUN wget -q -T 2 -O /got {base}/nothing\n"})
    answer = build(busybox_daemon, body)
    assert answer.status_code == 200, answer.text
    assert "Error build: The command [/bin/sh -c wget" in answer.text, answer.text
    assert "returned a non-zero code" in answer.text, answer.text
