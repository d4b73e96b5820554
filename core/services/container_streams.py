"""Attach streams: a running container's stdio, the attachments waiting for a container's next
start (today's docker CLI attaches before it starts), and the log of a run that ended before
its waiting client could attach."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from moorage.core.sdk.errors import NotFound, StateError
from moorage.core.sdk.hookspecs.exec import Attachment, Stream
from moorage.core.sdk.logs import LogPosition, log_position, read_log
from moorage.core.services.container import Container
from moorage.core.services.run_environment import RunEnvironment


class AttachStreams:
    """Where attaches get their streams from; a start connects the ones waiting for it."""

    def __init__(self, env: RunEnvironment) -> None:
        self.env = env
        #: attachments waiting for a container to start: container id -> waiters
        self._waiting: dict[str, list[PendingAttach]] = {}
        self._waiting_lock = threading.Lock()

    def attach(self, container: Container) -> Attachment | None:
        """An attachment to a running container's stdio, or None if it is not running."""
        if not container.state.running:
            return None
        try:
            return self.env.exec.attach(container.id)
        except (StateError, NotFound):
            return None

    def attach_stream(self, container: Container) -> StreamSource:
        """Where an attach's stream comes from: a running container's stdio, else a
        ``PendingAttach`` that gets the stdio of its next start. Decided before the client is
        answered: the CLI sends the start as soon as it is, and a run that starts and ends in
        between must not leave the attach waiting for a next start that never comes."""
        with container.lock:  # a start in progress finishes first: then it is running
            log_end = log_position(container.log_path)
            if container.state.running:
                try:
                    return StreamSource(log_end, attachment=self.env.exec.attach(container.id))
                except (StateError, NotFound):  # it has just ended: its output is in the log
                    return StreamSource(log_position(container.log_path))
            pending = PendingAttach()
            with self._waiting_lock:
                self._waiting.setdefault(container.id, []).append(pending)
            return StreamSource(log_end, pending=pending)

    def end_waiting(self, container: Container) -> None:
        """A start failed: the attaches waiting for it get no stream (their clients are told by
        the start's error, and must not wait on for a run that did not happen)."""
        for pending in self._take_waiting(container):
            pending.ready.set()

    def _take_waiting(self, container: Container) -> list[PendingAttach]:
        with self._waiting_lock:
            return self._waiting.pop(container.id, [])

    def connect_waiting(self, container: Container) -> None:
        for pending in self._take_waiting(container):
            if pending.cancelled:
                continue
            try:
                # with replay: the output written since the start, before this attach, comes first
                pending.attachment = self.env.exec.attach(container.id, replay=True)
            except (StateError, NotFound):
                # the run already ended: its whole output is in the log
                pending.attachment = LogAttachment(container.log_path, container.run_log_start)
            pending.ready.set()


class LogAttachment(Attachment):
    """The output of a run that ended before its waiting client could attach, from the log."""

    def __init__(self, path: Path, since: LogPosition | None) -> None:
        self._entries = read_log(path, since=since)  # streamed from disk

    def read(self) -> tuple[Stream, bytes] | None:
        entry = next(self._entries, None)
        if entry is None:
            return None
        return (Stream.STDERR if entry.stream == "stderr" else Stream.STDOUT), entry.log.encode()

    def write(self, data: bytes) -> None:
        raise StateError("the container is not running")

    def close_stdin(self) -> None:
        pass

    def close(self) -> None:
        self._entries.close()


class PendingAttach:
    """An attach waiting for its container to start."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.attachment: Attachment | None = None
        self.cancelled = False

    def wait(self, timeout: float | None = None) -> Attachment | None:
        self.ready.wait(timeout)
        return self.attachment

    def cancel(self) -> None:
        self.cancelled = True
        self.ready.set()
        if self.attachment is not None:
            self.attachment.close()


@dataclass
class StreamSource:
    """An attach's stream (``AttachStreams.attach_stream``): a running container's ``attachment``, or
    the ``pending`` attachment of its next start, or neither (it has just ended). ``log_end``
    is where the log ended when this was decided: a replay of the log (``logs=1``) stops
    there, and what comes after is the stream's."""

    log_end: LogPosition
    attachment: Attachment | None = None
    pending: PendingAttach | None = None

    def close(self) -> None:
        """The attach is over: a pending one is cancelled (a later start attaches nobody), and
        the attachment, given now or by a start meanwhile, closed (closing twice is harmless)."""
        if self.pending is not None:
            self.pending.cancel()
        if self.attachment is not None:
            self.attachment.close()
