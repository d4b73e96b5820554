"""A third-party plugin, as source, that records every lifecycle hook call with all its
arguments to ``<daemon root>/hook-calls.jsonl``; and the reader of that file. The hook
tests in tests/api and tests/core share it."""

from __future__ import annotations

import json
import time
from pathlib import Path

RECORDER = '''
import json, os
from moorage.core.sdk.hookspecs import hookimpl

_path = None


def _record(**event):
    with open(_path, "a") as f:
        f.write(json.dumps(event) + "\\n")


@hookimpl
def moorage_daemon_configured(config):
    global _path
    _path = os.path.join(str(config["daemon"]["root"]), "hook-calls.jsonl")


@hookimpl
def moorage_container_created(container_id, config, created, duration, graph_driver):
    _record(hook="created", id=container_id, cmd=config["Cmd"], at=created, duration=duration, graph=graph_driver)


@hookimpl
def moorage_container_started(container_id, pid, started, duration, exec_driver, network_driver, graph_driver):
    _record(hook="started", id=container_id, pid=pid, at=started, duration=duration, exec=exec_driver,
            network=network_driver, graph=graph_driver)


@hookimpl
def moorage_container_died(container_id, exit_code, finished, run_time, exec_driver, network_driver):
    _record(hook="died", id=container_id, exit_code=exit_code, at=finished, run_time=run_time, exec=exec_driver,
            network=network_driver)


@hookimpl
def moorage_container_destroyed(container_id):
    _record(hook="destroyed", id=container_id)


@hookimpl
def moorage_image_deleted(image_id):
    _record(hook="image_deleted", id=image_id)
'''


def recorded_calls(root: Path, until=lambda found: True, timeout: float = 10) -> list[dict]:
    """The hook calls recorded under the daemon root ``root``, once ``until(calls)`` holds or
    the timeout passes (some hooks run after the request that caused them was answered)."""
    path = root / "hook-calls.jsonl"
    deadline = time.monotonic() + timeout
    while True:
        found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if until(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
