"""Host interfaces deleted in the background, by one thread for all of them.

The kernel takes 10-25 ms to tear an interface down, and a container's ``leave`` runs when it
exits, which its removal waits for: so the host end of its veth pair is deleted later. One
worker thread does that for every container (a thread started per deletion cost more CPU than
the deletion's own request); it stops after a while without work and starts again with the
next deletion.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

#: seconds the worker waits for more work before it stops
IDLE_SECONDS = 2.0


class LinkReaper:
    """Calls ``delete(name)`` for each name handed to ``delete_later``, in order, in a thread."""

    def __init__(self, delete: Callable[[str], object], thread_name: str) -> None:
        self._delete = delete
        self._thread_name = thread_name
        self._cond = threading.Condition()
        self._queue: list[str] = []
        #: names queued or being deleted
        self._pending: set[str] = set()
        self._worker: threading.Thread | None = None

    def delete_later(self, name: str) -> None:
        with self._cond:
            if name in self._pending:
                return
            self._pending.add(name)
            self._queue.append(name)
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
                self._worker.start()
            self._cond.notify_all()

    def wait(self, name: str | None = None) -> None:
        """Until ``name`` (every name, with None) is deleted or its deletion failed (logged)."""
        with self._cond:
            self._cond.wait_for(lambda: (name not in self._pending) if name is not None else not self._pending)

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._cond.wait_for(lambda: self._queue, timeout=IDLE_SECONDS):
                    self._worker = None
                    return
                name = self._queue.pop(0)
            try:
                self._delete(name)
            except Exception:  # noqa: BLE001 - a thread has nobody to raise to
                log.exception("deleting the host interface %s", name)
            finally:
                with self._cond:
                    self._pending.discard(name)
                    self._cond.notify_all()
