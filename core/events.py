"""The event bus: lifecycle events with a history for ``GET /events?since=``.

Every subscriber has its own queue (Docker 0.6 keyed listeners by remote address, so all unix
socket clients shared one slot; moorage does not copy that). Events are published from any
thread; delivery to asyncio subscribers is thread-safe. The history is kept in memory and is
bounded (``max_history``), unlike 0.6's list that grew for the daemon's whole life.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    status: str
    id: str
    from_: str = ""
    time: int = field(default_factory=lambda: int(time.time()))

    def to_api(self) -> dict:
        """The v1.6 object: ``{"status","id","from","time"}``, ``from`` omitted when empty."""
        out = {"status": self.status, "id": self.id}
        if self.from_:
            out["from"] = self.from_
        out["time"] = self.time
        return out


class EventBus:
    def __init__(self, max_history: int = 10000) -> None:
        self._history: deque[Event] = deque(maxlen=max_history)
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()

    def publish(self, status: str, id: str, from_: str = "") -> Event:
        event = Event(status=status, id=id, from_=from_)
        with self._lock:
            self._history.append(event)
            subscribers = list(self._subscribers)
        for loop, queue in subscribers:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, event)
            except RuntimeError:  # the subscriber's loop is closed
                self._drop(loop, queue)
        return event

    def history(self, since: int | None = None) -> list[Event]:
        with self._lock:
            events = list(self._history)
        if not since:
            return []
        return [e for e in events if e.time >= since]

    def __len__(self) -> int:
        return len(self._history)

    def subscribe(self) -> asyncio.Queue:
        """A queue receiving every event published from now on; call ``unsubscribe`` after."""
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            self._subscribers.add((asyncio.get_running_loop(), queue))
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s[1] is not queue}

    def _drop(self, loop, queue) -> None:
        with self._lock:
            self._subscribers.discard((loop, queue))
