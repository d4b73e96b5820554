"""The bridge driver's background deletion of host interfaces (``reaper.py``)."""

from __future__ import annotations

import threading

from moorage.drivers.network.bridge import reaper
from moorage.drivers.network.bridge.reaper import LinkReaper


def test_names_are_deleted_in_order_and_waited_for():
    deleted, gate = [], threading.Event()

    def delete(name):
        gate.wait(10)
        deleted.append(name)

    r = LinkReaper(delete, "test-reaper")
    for name in ("a", "b", "a"):  # a name already queued is not queued twice
        r.delete_later(name)
    gate.set()
    r.wait("b")
    assert deleted[:2] == ["a", "b"]
    r.wait()
    assert deleted == ["a", "b"]


def test_a_failed_deletion_is_logged_and_not_waited_for_forever(caplog):
    def delete(name):
        raise OSError(f"cannot delete {name}")

    r = LinkReaper(delete, "test-reaper")
    r.delete_later("veth0")
    r.wait("veth0")
    assert "deleting the host interface veth0" in caplog.text


def test_the_worker_stops_when_idle_and_starts_again(monkeypatch):
    monkeypatch.setattr(reaper, "IDLE_SECONDS", 0.01)
    deleted = []
    r = LinkReaper(deleted.append, "test-reaper")
    r.delete_later("x")
    r.wait()
    worker = r._worker
    if worker is not None:
        worker.join(10)
    assert r._worker is None
    r.delete_later("y")
    r.wait()
    assert deleted == ["x", "y"]
