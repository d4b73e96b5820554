"""What a driver hands its zygote to start one container's monitor: a ``MonitorRequest`` (what
every monitor needs) carrying the driver's own ``start`` (how its monitor makes the process).
The zygote is another process, so the request crosses as JSON: ``to_json`` on the driver's
side, ``from_json`` with the driver's start type in the monitor."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar


class Start(Protocol):
    """A driver's start type: a dataclass that rebuilds itself from its JSON form."""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Start: ...


S = TypeVar("S")


@dataclass(frozen=True)
class MonitorRequest(Generic[S]):
    exec_dir: str
    log_path: str
    #: ``LogRotation``'s max_size and max_files
    log_rotation: tuple[int, int]
    tty: bool
    open_stdin: bool
    #: the network driver configures the namespace before the command runs (see ``monitor``)
    handshake: bool
    #: the driver's own part: what its monitor's ``spawn`` needs
    start: S

    def to_json(self) -> bytes:
        return json.dumps(dataclasses.asdict(self)).encode()

    @classmethod
    def from_json(cls, payload: bytes, start_type: type[Start]) -> MonitorRequest:
        data = json.loads(payload)
        data["log_rotation"] = tuple(data["log_rotation"])
        data["start"] = start_type.from_dict(data["start"])
        return cls(**data)
