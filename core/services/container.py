"""A container's record: its typed config, host config, network settings and internal state
(``container_model``), its run state, and the events its runs signal; as the inspect object and
as ``config.json``."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from moorage.core.sdk.logs import LogPosition
from moorage.core.services.container_config import effective_host_config, normalize_config, normalize_host_config
from moorage.core.services.container_model import ContainerConfig, HostConfig, InternalState, NetworkSettings

ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class State:
    running: bool = False
    pid: int = 0
    exit_code: int = 0
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    ghost: bool = False
    #: frozen by ``pause`` (beyond 1.6: today's CLI shows it)
    paused: bool = False

    def to_api(self) -> dict:
        return {"Running": self.running, "Pid": self.pid, "ExitCode": self.exit_code,
                "StartedAt": self.started_at, "FinishedAt": self.finished_at, "Ghost": self.ghost,
                "Paused": self.paused}

    @classmethod
    def from_api(cls, data: dict) -> State:
        return cls(running=bool(data.get("Running")), pid=int(data.get("Pid") or 0),
                   exit_code=int(data.get("ExitCode") or 0), started_at=data.get("StartedAt") or ZERO_TIME,
                   finished_at=data.get("FinishedAt") or ZERO_TIME, ghost=bool(data.get("Ghost")),
                   paused=bool(data.get("Paused")))


@dataclass
class Container:
    id: str
    created: str
    path: str
    args: list[str]
    config: ContainerConfig
    image: str
    name: str
    directory: Path
    state: State = field(default_factory=State)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    volumes: dict[str, str] = field(default_factory=dict)
    volumes_rw: dict[str, bool] = field(default_factory=dict)
    #: what core needs beyond the inspect object: drivers used, the network endpoint
    internal: InternalState = field(default_factory=InternalState)
    host_config: HostConfig = field(default_factory=HostConfig)
    #: serialises start/stop/kill/remove of this container
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    #: set once the current run's exit is recorded (also when never started): ``wait`` returns
    exited: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    #: set once what the last run held (rootfs mount, network, exec driver state) is released
    cleaned: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    #: set under ``lock`` when the container is removed: a start that raced with it must fail
    removed: bool = field(default=False, repr=False, compare=False)
    #: a client stopped or killed it: its restart policy does not start it again
    stop_requested: bool = field(default=False, repr=False, compare=False)
    #: when the current run began (``time.monotonic``), for the died hook's ``run_time``
    started_monotonic: float | None = field(default=None, repr=False, compare=False)
    #: where the current run begins in the log
    run_log_start: LogPosition | None = field(default=None, repr=False, compare=False)

    @property
    def init_layer(self) -> str:
        """The layer below the container's own: its image's shared init layer (containers made
        before init layers were shared have one of their own, ``<container id>-init``)."""
        return self.internal.init_layer or f"{self.id}-init"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.id}-json.log"

    def to_api(self, host_config: bool = True) -> dict:
        """The inspect object, keys in Docker 0.6.5's order; ``host_config=False`` leaves the
        derived ``HostConfig`` out (``config.json``, written at every start, keeps the saved one)."""
        data = {
            "ID": self.id, "Created": self.created, "Path": self.path, "Args": list(self.args),
            "Config": self.config.to_api(), "State": self.state.to_api(), "Image": self.image,
            "NetworkSettings": self.network.to_api(), "SysInitPath": "",
            "ResolvConfPath": str(self.directory / "resolv.conf"),
            "HostnamePath": str(self.directory / "hostname"), "HostsPath": str(self.directory / "hosts"),
            "Name": self.name, "Volumes": dict(self.volumes), "VolumesRW": dict(self.volumes_rw),
            "Driver": self.internal.graph_driver or "",
        }
        if host_config:  # beyond 1.6 (Docker 0.7 added it): today's `docker inspect` and `docker port` read it
            data["HostConfig"] = effective_host_config(self.config, self.host_config).to_api()
        return data

    def to_disk(self) -> dict:
        """What ``config.json`` holds."""
        data = self.to_api(host_config=False)  # the saved one is ``Moorage.HostConfig``
        data["Config"] = self.config.to_disk()  # every field, today's too
        data["Moorage"] = {**self.internal.to_disk(), "HostConfig": self.host_config.to_api()}
        return data

    @classmethod
    def from_disk(cls, data: dict, directory: Path) -> Container:
        moorage = dict(data.get("Moorage") or {})
        return cls(id=data["ID"], created=data["Created"], path=data["Path"], args=list(data.get("Args") or []),
                   config=normalize_config(data.get("Config")), image=data["Image"], name=data.get("Name", ""),
                   directory=directory, state=State.from_api(data.get("State") or {}),
                   network=NetworkSettings.from_go(data.get("NetworkSettings")), volumes=data.get("Volumes") or {},
                   volumes_rw=data.get("VolumesRW") or {}, internal=InternalState.from_disk(moorage),
                   host_config=normalize_host_config(moorage.get("HostConfig")))
