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
    #: ``container`` or ``image``; with ``actor_id`` (the full id) and ``attributes``, what
    #: Docker 1.10+ added as ``Type``/``Action``/``Actor``
    type: str = "container"
    actor_id: str = ""
    attributes: tuple[tuple[str, str], ...] = ()

    def to_api(self) -> dict:
        """The v1.6 object ``{"status","id","from","time"}`` (``from`` omitted when empty),
        followed by ``Type``, ``Action`` and ``Actor``: a 1.6 client ignores them, and today's
        docker CLI reads a container's exit code from ``Actor.Attributes.exitCode``."""
        out = {"status": self.status, "id": self.id}
        if self.from_:
            out["from"] = self.from_
        out["time"] = self.time
        out["Type"] = self.type
        out["Action"] = self.status
        out["Actor"] = {"ID": self.actor_id or self.id, "Attributes": dict(self.attributes)}
        return out

    def matches(self, filters: dict[str, list[str]]) -> bool:
        """Docker's event ``filters`` (``type``, ``event``, ``container``, ``image``)."""
        attributes = dict(self.attributes)
        for key, wanted in filters.items():
            if not wanted:
                continue
            if key == "type" and self.type not in wanted:
                return False
            if key == "event" and self.status not in wanted:
                return False
            if key == "container" and (self.type != "container" or not any(
                    w and ((self.actor_id or self.id).startswith(w) or w.lstrip("/") == attributes.get("name"))
                    for w in wanted)):
                return False
            if key == "image" and not any(w in (self.from_, attributes.get("image")) for w in wanted):
                return False
        return True


class EventBus:
    def __init__(self, max_history: int = 10000) -> None:
        self._history: deque[Event] = deque(maxlen=max_history)
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = set()
        self._lock = threading.Lock()

    def publish(self, status: str, id: str, from_: str = "", type: str = "container", actor_id: str = "",
                attributes: dict[str, str] | None = None) -> Event:
        event = Event(status=status, id=id, from_=from_, type=type, actor_id=actor_id,
                      attributes=tuple(sorted((attributes or {}).items())))
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

    @property
    def subscribers(self) -> int:
        """How many streams are subscribed now."""
        with self._lock:
            return len(self._subscribers)

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
