"""The API cycle of a daemon: create + start + wait + remove of ``/bin/true`` over its unix socket.

The client is the standard library's ``http.client`` on one keep-alive connection, the leanest
Python client: the figures are the daemon's.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from moorage.core.sdk.errors import ConfigError

CREATE = {"Image": "busybox", "Cmd": ["/bin/true"]}


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


def toml_text(data: dict) -> str:
    """A config dict as TOML (tables of scalars, lists and sub-tables: what a daemon config holds)."""
    lines: list[str] = []

    def table(prefix: str, values: dict) -> None:
        lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict))
        for k, v in values.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)

    for name, values in data.items():
        table(name, values)
    return "\n".join(lines) + "\n"


def api_cycles(base: Path, config: dict, tar: Path, cycles: int, record) -> None:
    """Start a daemon with ``config`` below ``base``, import ``tar`` as busybox, and call
    ``record(seconds)`` for each of ``cycles`` cycles (after three warm-up cycles)."""
    sock = base / "bench.sock"
    (base / "daemon.toml").write_text(toml_text(config))
    log = open(base / "daemon.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "moorage.api.cli", "daemon", "--config", str(base / "daemon.toml"),
                             "-g", str(base / "root"), "-H", f"unix://{sock}", "-p", str(base / "pid")],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        client = UnixConnection(sock)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise ConfigError(f"the daemon did not start: {(base / 'daemon.log').read_text()[-800:]}")
            try:
                if client.call("GET", "/_ping")[0] == 200:
                    break
            except OSError:
                client.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        status, _ = client.call("POST", "/images/create?fromSrc=-&repo=busybox", body=tar.read_bytes())
        assert status == 200, status
        for i in range(cycles + 3):
            t0 = time.perf_counter()
            status, body = client.call("POST", "/containers/create", json_body=CREATE)
            cid = json.loads(body)["Id"]
            answers = [status, client.call("POST", f"/containers/{cid}/start")[0],
                       client.call("POST", f"/containers/{cid}/wait")[0],
                       client.call("DELETE", f"/containers/{cid}")[0]]
            seconds = time.perf_counter() - t0
            if answers != [201, 204, 200, 204]:
                raise RuntimeError(f"API cycle {i}: unexpected answers {answers}")
            if i >= 3:
                record(seconds)
        client.close()
    except (OSError, RuntimeError, AssertionError) as exc:
        log_tail = (base / "daemon.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"API cycle failed: {exc}; the daemon's log ends with:\n{log_tail}") from exc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
