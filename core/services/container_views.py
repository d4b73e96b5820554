"""What the API shows of containers: inspect, the list's rows, ``top``."""

from __future__ import annotations

import logging
import subprocess
import time
from typing import TYPE_CHECKING

from moorage.core.sdk.errors import InvalidParameter, NotSupported, StateError
from moorage.core.sdk.humanize import human_duration
from moorage.core.sdk.ids import short_id
from moorage.core.sdk.layers import differ_for
from moorage.core.services.container import Container
from moorage.core.services.container_config import effective_host_config
from moorage.core.services.images import parse_time

if TYPE_CHECKING:
    from moorage.core.services.containers import ContainerService

log = logging.getLogger(__name__)


class ContainerViews:
    """Reads the container service's records; holds nothing (made per request)."""

    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers

    def inspect(self, name: str) -> dict:
        container = self.containers.get(name)
        data = container.to_api(host_config=False)
        host = effective_host_config(container.config, container.host_config)
        # links live in the name graph once started: shown as Docker did, "/child:/parent/alias"
        links = [f"{self.containers.names.name_of(child)}:{path}"
                 for path, child in sorted(self.containers.names.children(container.name).items())]
        if links:
            host.links = links
        data["HostConfig"] = host.to_api()
        return data

    def status(self, container: Container) -> str:
        if container.state.running:
            if container.state.ghost:
                return "Ghost"
            up = "Up " + human_duration(time.time() - parse_time(container.state.started_at))
            return up + " (Paused)" if container.state.paused else up
        return f"Exit {container.state.exit_code}"

    def list(self, all: bool = False, limit: int = -1, since: str = "", before: str = "",
             size: bool = False) -> list[dict]:
        """``GET /containers/json`` rows (reference §2.5), newest first."""
        containers = self.containers.all()
        everything = all or limit > 0 or since or before
        rows: list[dict] = []
        found_before = not before
        for container in containers:
            cid12 = container.id[:12]
            if not found_before:
                if before in (cid12, container.id):
                    found_before = True
                continue
            if since and since in (cid12, container.id):
                break
            if not everything and not container.state.running:
                continue
            if limit > 0 and len(rows) >= limit:
                break
            rows.append(self._row(container, size))
        return [] if limit == 0 else rows

    def _row(self, container: Container, size: bool) -> dict:
        row = {
            "Id": container.id,
            "Image": self.containers.image_name(container.image),
            "Command": f"{container.path} {' '.join(container.args)}",
            "Created": parse_time(container.created),
            "Status": self.status(container),
            "Ports": port_rows(container),
            "SizeRw": 0,
            "SizeRootFs": 0,
            "Names": self.containers.names_of(container),
        }
        if size:
            row["SizeRw"] = self.size_rw(container)
            images = self.containers.images
            row["SizeRootFs"] = row["SizeRw"] + images.virtual_size(images.get(container.image))
        return row

    def size_rw(self, container: Container) -> int:
        try:
            return int(differ_for(self.containers.graph).diff_size(container.id, container.init_layer))
        except Exception:
            log.exception("size of %s", short_id(container.id))
            return 0

    def top(self, name: str, ps_args: str = "") -> dict:
        """``ps`` on the host, limited to the container's processes (reference §3.5)."""
        container = self.containers.get(name)
        if not container.state.running:
            raise StateError(f"Container {short_id(container.id)} is not running")
        if self.containers.exec is None:
            raise NotSupported("no exec driver is available in this daemon")
        pids = {str(p) for p in self.containers.exec.processes(container.id)}
        args = ps_args.split() if ps_args else ["-ef"]
        out = subprocess.run(["ps", *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise InvalidParameter(f"Error running ps: {out.stderr.strip()}")
        lines = out.stdout.splitlines()
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter("Couldn't find PID field in ps output")
        pid_column = titles.index("PID")
        processes = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_column and fields[pid_column] in pids:
                processes.append(fields)
        return {"Titles": titles, "Processes": processes}


def port_rows(container: Container) -> list[dict] | None:
    """The list's ``Ports``: published bindings, and ``PrivatePort: 0`` rows for ports that are
    only exposed (the 0.6 quirk); None when there are no ports."""
    rows = []
    ports = container.network.ports or {}
    exposed = set(container.config.exposed_ports or {})
    for key in sorted(exposed | set(ports)):
        number, _, proto = key.partition("/")
        bindings = ports.get(key)
        if bindings:
            for b in bindings:
                rows.append({"PrivatePort": int(number), "PublicPort": int(b["HostPort"]), "Type": proto,
                             "IP": b.get("HostIp", "")})
        else:
            rows.append({"PrivatePort": 0, "PublicPort": int(number), "Type": proto, "IP": ""})
    return rows or None
