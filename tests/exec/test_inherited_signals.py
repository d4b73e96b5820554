"""A signal the daemon ignores (a daemon started by ``nohup`` ignores SIGHUP) is not ignored
in its containers: ``SIG_IGN`` survives ``execve``, so each exec driver resets it."""

from __future__ import annotations

import signal

import pytest
from conftest import CONTAINER_CONFIG, import_image

pytestmark = pytest.mark.root


def test_signals_the_daemon_ignores_are_not_ignored_in_a_container(daemon_factory, busybox_tar, exec_driver):
    daemon = daemon_factory(CONTAINER_CONFIG.format(graph="overlay", exec=exec_driver), start=False)
    ignored = (signal.SIGHUP, signal.SIGUSR1, signal.SIGQUIT)
    previous = [signal.signal(sig, signal.SIG_IGN) for sig in ignored]
    try:
        daemon.start()  # inherits them ignored, as from nohup
    finally:
        for sig, handler in zip(ignored, previous, strict=True):
            signal.signal(sig, handler)
    import_image(daemon, busybox_tar)
    with daemon.client() as api:
        made = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["grep", "SigIgn", "/proc/self/status"]})
        assert made.status_code == 201, made.text
        cid = made.json()["Id"]
        assert api.post(f"/containers/{cid}/start").status_code == 204
        assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0
        out = api.get(f"/containers/{cid}/logs", params={"stdout": 1}).content
    mask = int(out.split(b"SigIgn:")[1].split()[0], 16)
    assert not [sig.name for sig in ignored if mask & (1 << (sig - 1))]
