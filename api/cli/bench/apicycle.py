"""The API cycle of a daemon: create + start + wait + remove of ``/bin/true`` over its unix socket,
measured by ``moorage bench exec|network`` and by bench/api_cycle.py.

The client is the standard library's ``http.client`` on one keep-alive connection, the leanest
Python client: the figures are the daemon's.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from time import perf_counter

from moorage.api.cli.harness import DaemonFailed, DaemonProcess
from moorage.core.sdk.errors import ConfigError

CREATE = {"Image": "busybox", "Cmd": ["/bin/true"]}
WARM_UP = 3  # cycles run first and left out of the figures


class UnixConnection(http.client.HTTPConnection):
    """HTTP/1.1 over the daemon's unix socket, kept alive between requests."""

    def __init__(self, path: Path) -> None:
        super().__init__("moorage", timeout=60)
        self.path = str(path)

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)

    def call(self, method: str, url: str, body: bytes | None = None, json_body: object = None) -> tuple[int, bytes]:
        headers = {}
        if json_body is not None:
            body, headers = json.dumps(json_body).encode(), {"Content-Type": "application/json"}
        for attempt in (1, 2):
            try:
                self.request(method, url, body=body, headers=headers)
                response = self.getresponse()
                return response.status, response.read()
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected):
                # the server closed the kept-alive connection as the request went out: once more
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Cycle:
    """The seconds each request of one cycle took."""

    create: float
    start: float
    wait: float
    remove: float

    @property
    def total(self) -> float:
        return self.create + self.start + self.wait + self.remove


#: the phases of a cycle, in order
PHASES = tuple(f.name for f in fields(Cycle))


def one_cycle(client: UnixConnection, n: int = 0) -> Cycle:
    """One create + start + wait + remove through ``client`` (``n`` names it in an error)."""
    t0 = perf_counter()
    status, body = client.call("POST", "/containers/create", json_body=CREATE)
    cid = json.loads(body)["Id"]
    t1 = perf_counter()
    answers = [status, client.call("POST", f"/containers/{cid}/start")[0]]
    t2 = perf_counter()
    answers.append(client.call("POST", f"/containers/{cid}/wait")[0])
    t3 = perf_counter()
    answers.append(client.call("DELETE", f"/containers/{cid}")[0])
    t4 = perf_counter()
    if answers != [201, 204, 200, 204]:
        raise RuntimeError(f"API cycle {n}: unexpected answers {answers}")
    return Cycle(t1 - t0, t2 - t1, t3 - t2, t4 - t3)


def run_cycles(client: UnixConnection, cycles: int, record: Callable[[Cycle], None]) -> None:
    """``cycles`` cycles through ``client`` (after the warm-up), each handed to ``record``."""
    for i in range(cycles + WARM_UP):
        cycle = one_cycle(client, i)
        if i >= WARM_UP:
            record(cycle)


@contextmanager
def cycle_daemon(base: Path, config: str, tar: Path) -> Iterator[tuple[UnixConnection, int]]:
    """A daemon with config text ``config`` below ``base``, ``tar`` imported as busybox: its
    client and pid. A daemon that does not start is a ``ConfigError`` (its drivers cannot run
    here); a failure inside the block a ``RuntimeError``, both ending with the daemon's log."""
    daemon = DaemonProcess(base, config, tcp=False)
    try:
        try:
            daemon.start()
        except DaemonFailed as exc:
            raise ConfigError(f"the daemon did not start: {str(exc)[-800:]}") from None
        client = UnixConnection(daemon.sock)
        status, _ = client.call("POST", "/images/create?fromSrc=-&repo=busybox", body=tar.read_bytes())
        if status != 200:
            raise RuntimeError(f"importing busybox answered {status}")
        yield client, daemon.proc.pid
        client.close()
    except (OSError, RuntimeError) as exc:
        raise RuntimeError(f"API cycle failed: {exc}; the daemon's log ends with:\n{daemon.log()[-1500:]}") from exc
    finally:
        daemon.dispose(remove=False)


def api_cycles(base: Path, config: str, tar: Path, cycles: int, record: Callable[[Cycle], None],
               observe: Callable[[int], AbstractContextManager[object]] | None = None) -> None:
    """Call ``record`` with each of ``cycles`` cycles of a ``cycle_daemon``. ``observe``, given
    the daemon's pid, is entered around the cycles (a profiler attached to the daemon)."""
    with cycle_daemon(base, config, tar) as (client, pid), (observe or (lambda _: nullcontext()))(pid):
        run_cycles(client, cycles, record)
