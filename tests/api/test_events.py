"""``GET /events``: the v1.6 stream (objects back to back, no separator) and the ``since`` replay.

The kernel runs in this process so the test can publish events directly; the client still talks
to it over a real unix socket.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading

import pytest
from conftest import eventually

from moorage.api.http.app import create_app
from moorage.api.http.server import bind, make_server, parse_host
from moorage.core.kernel.config import load
from moorage.core.kernel.kernel import Kernel


@pytest.fixture
def served_kernel(tmp_path):
    config = load(None, {"daemon.root": str(tmp_path / "root"), "daemon.pidfile": None})
    kernel = Kernel(config)
    kernel.start(load_entry_points=False)
    sock = bind(parse_host(f"unix://{tmp_path}/events.sock"))
    server = make_server(create_app(kernel))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True)
    thread.start()
    eventually(lambda: server.started or not thread.is_alive(), "the API server to start")
    assert server.started, "the API server's thread ended before it started"
    yield kernel, str(tmp_path / "events.sock")
    server.should_exit = True
    thread.join(10)
    sock.close()
    loop.close()
    kernel.shutdown()


def wait_for_subscribers(kernel, count: int, timeout: float = 10) -> None:
    eventually(lambda: kernel.events.subscribers >= count, f"{count} event streams to subscribe", timeout)


def open_stream(path: str, query: str = "") -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(f"GET /v1.6/events{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


class ChunkedObjects:
    """Reads a chunked body and decodes JSON objects written back to back."""

    def __init__(self, s: socket.socket) -> None:
        self.s, self.raw, self.body = s, b"", ""
        while b"\r\n\r\n" not in self.raw:
            self.raw += s.recv(4096)
        self.head, _, self.raw = self.raw.partition(b"\r\n\r\n")

    def _pump(self) -> None:
        progressed = False
        while b"\r\n" in self.raw:
            size_line, _, rest = self.raw.partition(b"\r\n")
            size = int(size_line, 16)
            if len(rest) < size + 2:
                break
            self.body += rest[:size].decode()
            self.raw = rest[size + 2:]
            progressed = True
        if not progressed:
            self.raw += self.s.recv(4096)

    def next(self) -> dict:
        decoder = json.JSONDecoder()
        while True:
            if self.body:
                try:
                    obj, end = decoder.raw_decode(self.body)
                    self.body = self.body[end:]
                    return obj
                except json.JSONDecodeError:
                    pass
            self._pump()


def test_stream_replays_since_then_streams_live(served_kernel):
    kernel, path = served_kernel
    kernel.events.publish("create", "a" * 12, "busybox:latest")
    kernel.events.publish("start", "a" * 12, "busybox:latest")
    since = kernel.events.history(1)[0].time
    stream = ChunkedObjects(open_stream(path, f"?since={since}"))
    assert b"200 OK" in stream.head and b"content-type: application/json" in stream.head.lower()
    first, second = stream.next(), stream.next()
    assert list(first)[:4] == ["status", "id", "from", "time"]  # the v1.6 object, in Docker's key order
    assert first == {"status": "create", "id": "a" * 12, "from": "busybox:latest", "time": first["time"],
                     "Type": "container", "Action": "create", "Actor": {"ID": "a" * 12, "Attributes": {}}}
    assert second["status"] == "start"
    kernel.events.publish("delete", "b" * 12, type="image")  # image events carry no "from"
    live = stream.next()
    assert "from" not in live and (live["status"], live["id"], live["Type"]) == ("delete", "b" * 12, "image")
    # objects are written back to back with no separator between them
    kernel.events.publish("die", "c" * 12, "x")
    kernel.events.publish("destroy", "c" * 12, "x")
    assert [stream.next()["status"], stream.next()["status"]] == ["die", "destroy"]
    assert "\n" not in stream.body


def test_no_since_means_no_replay_and_each_client_gets_every_event(served_kernel):
    kernel, path = served_kernel
    kernel.events.publish("create", "old" + "0" * 9)
    a, b = ChunkedObjects(open_stream(path)), ChunkedObjects(open_stream(path, "?since=0"))
    wait_for_subscribers(kernel, 2)
    kernel.events.publish("start", "new" + "0" * 9)
    assert a.next()["id"] == "new" + "0" * 9
    assert b.next()["id"] == "new" + "0" * 9


def test_filters_select_events(served_kernel):
    kernel, path = served_kernel
    filters = '{"type":["container"],"container":["' + "f" * 6 + '"],"event":["die"]}'
    from urllib.parse import quote

    stream = ChunkedObjects(open_stream(path, "?filters=" + quote(filters)))
    wait_for_subscribers(kernel, 1)
    kernel.events.publish("die", "e" * 12, actor_id="e" * 64, attributes={"exitCode": "1"})
    kernel.events.publish("start", "f" * 12, actor_id="f" * 64)
    kernel.events.publish("die", "f" * 12, actor_id="f" * 64, attributes={"exitCode": "3"})
    event = stream.next()
    assert (event["id"], event["Actor"]["Attributes"]) == ("f" * 12, {"exitCode": "3"})


def test_events_history_is_bounded():
    from moorage.core.services.events import EventBus

    bus = EventBus(max_history=3)
    for i in range(5):
        bus.publish("create", str(i))
    assert [e.id for e in bus.history(1)] == ["2", "3", "4"]
