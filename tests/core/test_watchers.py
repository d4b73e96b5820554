"""The threads that watch running containers (``core/services/container_exits.Watchers``): each
watch has a thread of its own, and a thread whose watch ended takes the next one (a native
start no longer waits for a new thread to run)."""

from __future__ import annotations

import threading

from moorage.core.services.container_exits import Watchers


def run_and_wait(watchers: Watchers, call, name: str) -> None:
    done = threading.Event()

    def wrapped():
        try:
            call()
        finally:
            done.set()

    watchers.run(wrapped, name)
    assert done.wait(10)


def test_a_finished_watchs_thread_takes_the_next_and_is_named_after_it():
    watchers = Watchers()
    seen = []
    run_and_wait(watchers, lambda: seen.append((threading.get_ident(), threading.current_thread().name)), "monitor-a")
    threading.Event().wait(0.05)  # the thread goes back to the idle list after the call
    run_and_wait(watchers, lambda: seen.append((threading.get_ident(), threading.current_thread().name)), "monitor-b")
    assert seen[0][0] == seen[1][0]
    assert [name for _, name in seen] == ["monitor-a", "monitor-b"]


def test_concurrent_watches_each_get_a_thread():
    watchers = Watchers()
    release, idents, started = threading.Event(), set(), threading.Barrier(4, timeout=10)

    def watch():
        idents.add(threading.get_ident())
        started.wait()
        release.wait(10)

    for n in range(3):
        watchers.run(watch, f"monitor-{n}")
    started.wait()  # all three run at once: three threads
    release.set()
    assert len(idents) == 3


def test_a_failing_call_is_logged_and_its_thread_serves_again(caplog):
    watchers = Watchers()

    def broken():
        raise RuntimeError("broken watch")

    watchers.run(broken, "monitor-x")
    ran = []
    for _ in range(100):
        if watchers._idle:
            break
        threading.Event().wait(0.01)
    run_and_wait(watchers, lambda: ran.append(1), "monitor-y")
    assert ran == [1]
    assert "monitor-x failed" in caplog.text and "broken watch" in caplog.text


def test_an_idle_thread_ends(monkeypatch):
    monkeypatch.setattr(Watchers, "IDLE_SECONDS", 0.01)
    watchers = Watchers()
    threads = []
    run_and_wait(watchers, lambda: threads.append(threading.current_thread()), "monitor-z")
    threads[0].join(10)
    assert not threads[0].is_alive()
    assert watchers._idle == []
