"""``docker exec``: further processes in a running container (beyond 1.6; Docker 1.3's API).

An exec instance is created for a running container (``POST /containers/{id}/exec``), started
once (``POST /exec/{id}/start``), and inspected for its exit code afterwards. The exec driver
runs it (``ExecDriver.exec``) inside the container's namespaces and cgroups under its
confinement. Instances live in the daemon's memory only, as in Docker; at most
``MAX_INSTANCES`` are kept (the oldest finished ones go first) and a container's go with it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound, NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import ExecDriver, ExecProcess, ExecSpec
from moorage.core.sdk.ids import new_id, short_id
from moorage.core.services.container_config import environment
from moorage.core.services.containers import Container, ContainerService

MAX_INSTANCES = 1024


@dataclass
class ExecInstance:
    id: str
    container: Container
    spec: ExecSpec
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    process: ExecProcess | None = None
    running: bool = False
    exit_code: int | None = None
    size: tuple[int, int] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def to_api(self) -> dict:
        return {
            "ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
            "ProcessConfig": {"tty": self.spec.tty, "entrypoint": self.spec.args[0], "arguments": self.spec.args[1:],
                              "privileged": self.spec.privileged, "user": self.spec.user},
            "OpenStdin": self.spec.open_stdin, "OpenStderr": self.attach_stderr, "OpenStdout": self.attach_stdout,
            "CanRemove": False, "ContainerID": self.container.id, "DetachKeys": "",
            "Pid": self.process.pid if self.process is not None and self.running else 0,
        }


def _field(body: dict, name: str, kind: type, default: Any) -> Any:
    value = next((v for k, v in body.items() if str(k).lower() == name.lower()), None)
    if value is None:
        return default
    if kind is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidParameter(f"Bad parameter: {name} must be a list of strings")
    elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidParameter(f"Bad parameter: {name} must be a {kind.__name__}")
    return value


class ExecService:
    def __init__(self, containers: ContainerService, exec_driver: ExecDriver | None) -> None:
        self.containers = containers
        self._exec = exec_driver
        self._instances: OrderedDict[str, ExecInstance] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, name: str, body: Any) -> ExecInstance:
        container = self.containers.get(name)
        if not isinstance(body, dict):
            raise InvalidParameter("Bad parameter: the exec config must be a JSON object")
        cmd = _field(body, "Cmd", list, [])
        if not cmd:
            raise InvalidParameter("No exec command specified")
        if not container.state.running:
            raise Conflict(f"Container {short_id(container.id)} is not running")
        env = environment(container.config)
        extra = _field(body, "Env", list, [])
        for entry in extra:
            if not entry or entry.startswith("="):
                raise InvalidParameter(f"Bad parameter: invalid environment entry {entry!r}")
        merged = dict(e.split("=", 1) if "=" in e else (e, "") for e in env + extra)
        privileged = bool(_field(body, "Privileged", bool, False) or container.config.privileged
                          or container.host_config.privileged)
        spec = ExecSpec(args=cmd, env=[f"{k}={v}" for k, v in merged.items()],
                        user=_field(body, "User", str, "") or container.config.user,
                        working_dir=_field(body, "WorkingDir", str, "") or container.config.working_dir,
                        tty=_field(body, "Tty", bool, False), open_stdin=_field(body, "AttachStdin", bool, False),
                        privileged=privileged)
        instance = ExecInstance(id=new_id(), container=container, spec=spec,
                                attach_stdin=spec.open_stdin, attach_stdout=_field(body, "AttachStdout", bool, True),
                                attach_stderr=_field(body, "AttachStderr", bool, True))
        with self._lock:
            self._instances[instance.id] = instance
            self._prune()
        self.containers.publish("exec_create: " + " ".join(cmd), container)
        return instance

    def _prune(self) -> None:
        for exec_id, instance in list(self._instances.items()):
            if len(self._instances) <= MAX_INSTANCES:
                return
            if not instance.running:
                del self._instances[exec_id]

    def get(self, exec_id: str) -> ExecInstance:
        with self._lock:
            instance = self._instances.get(exec_id)
            if instance is None:
                matches = [i for k, i in self._instances.items() if k.startswith(exec_id)] if exec_id else []
                instance = matches[0] if len(matches) == 1 else None
        if instance is None or instance.container.removed:
            raise NotFound(f"No such exec instance: {exec_id}")
        return instance

    def start(self, exec_id: str) -> ExecInstance:
        """Start the instance's process (once); the caller pumps its stdio and then calls
        ``finish``."""
        instance = self.get(exec_id)
        with instance.lock:
            if instance.process is not None:
                raise Conflict(f"Exec {short_id(instance.id)} has already been started")
            container = instance.container
            if not container.state.running:
                raise Conflict(f"Container {short_id(container.id)} is not running")
            if self._exec is None:
                raise NotSupported("no exec driver is available in this daemon")
            instance.process = self._exec.exec(container.id, instance.spec)
            instance.running = True
            if instance.size is not None and instance.spec.tty:
                instance.process.resize(*instance.size)
        self.containers.publish("exec_start: " + " ".join(instance.spec.args), container)
        return instance

    def finish(self, instance: ExecInstance) -> int:
        """Wait for the process to exit and record its exit code."""
        assert instance.process is not None
        code = instance.process.wait()
        instance.exit_code = -1 if code is None else code
        instance.running = False
        instance.process.close()
        self.containers.publish("exec_die", instance.container, execID=instance.id, exitCode=str(instance.exit_code))
        return instance.exit_code

    def run_detached(self, instance: ExecInstance) -> None:
        """Drain the output of a detached instance (nobody reads it) until it exits."""
        assert instance.process is not None
        while instance.process.read() is not None:
            pass
        self.finish(instance)

    def resize(self, exec_id: str, height: int, width: int) -> None:
        instance = self.get(exec_id)
        if not (1 <= height <= 65535 and 1 <= width <= 65535):
            raise InvalidParameter(f"Bad parameter: invalid size {height}x{width}")
        with instance.lock:
            if instance.process is None:
                instance.size = (height, width)  # applied at the start
                return
        if not instance.running:
            raise StateError(f"Exec {short_id(instance.id)} is not running")
        instance.process.resize(height, width)
