"""Today's shapes of a container (API 1.24 and above): inspect, the list's rows and its
filters, all read from the one typed record (``container.py``, ``container_model.py``).

The 1.6 shapes are ``container_views.py``'s; both are views on the same record, chosen by the
API's edge (``api/http/containers.py``) from the request's version.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.humanize import human_duration
from moorage.core.services.container import ZERO_TIME, Container
from moorage.core.services.container_config import effective_host_config, parse_bind
from moorage.core.services.container_views import ContainerViews, port_rows
from moorage.core.services.images import parse_time

if TYPE_CHECKING:
    from moorage.core.services.containers import ContainerService

#: The view today's versions get of the typed models (``GoModel.to_api``).
VIEW = (1, 47)
STATUSES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")
LIST_FILTERS = ("id", "name", "label", "status", "exited", "ancestor", "before", "since")
#: HostConfig fields today's clients read, at Docker's defaults when moorage has no value.
_HOST_DEFAULTS = {
    "LogConfig": {"Type": "json-file", "Config": {}}, "CgroupnsMode": "host", "IpcMode": "private",
    "PidMode": "", "UTSMode": "", "UsernsMode": "", "ShmSize": 67108864, "Runtime": "", "Isolation": "",
    "CpuPeriod": 0, "CpuQuota": 0, "NanoCpus": 0, "CpusetCpus": "", "CpusetMems": "", "MemoryReservation": 0,
    "OomKillDisable": False, "PidsLimit": None, "BlkioWeight": 0, "Devices": [], "Ulimits": None,
    "SecurityOpt": None, "Tmpfs": None, "Sysctls": None, "GroupAdd": None, "DnsOptions": [],
    "Init": None, "MaskedPaths": None, "ReadonlyPaths": None,
}


def state_status(container: Container) -> str:
    state = container.state
    if state.running:
        return "paused" if state.paused else "running"
    if state.started_at in ("", ZERO_TIME) and state.finished_at in ("", ZERO_TIME):
        return "created"
    return "exited"


class ModernViews:
    """Reads the container service's records; holds nothing (made per request)."""

    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self.legacy = ContainerViews(containers)

    def host_config(self, container: Container) -> dict:
        host = effective_host_config(container.config, container.host_config)
        links = [f"{self.containers.names.name_of(child)}:{path}"
                 for path, child in sorted(self.containers.names.children(container.name).items())]
        if links:
            host.links = links
        data = host.to_api(VIEW)
        for key, value in _HOST_DEFAULTS.items():
            data.setdefault(key, value)
        if data.get("NetworkMode") == "default":
            data["NetworkMode"] = "bridge"
        return data

    def mounts(self, container: Container) -> list[dict]:
        binds = {}
        for spec in container.host_config.binds or []:
            source, dest, writable = parse_bind(spec)
            binds[dest] = (source, writable)
        rows = []
        for dest, source in sorted(container.volumes.items()):
            writable = container.volumes_rw.get(dest, True)
            if dest in binds:
                rows.append({"Type": "bind", "Source": binds[dest][0], "Destination": dest, "Mode": "",
                             "RW": writable, "Propagation": "rprivate"})
            else:
                rows.append({"Type": "volume", "Name": source.rstrip("/").rsplit("/", 2)[-2] if "/" in source
                             else source, "Source": source, "Destination": dest, "Driver": "local", "Mode": "",
                             "RW": writable, "Propagation": ""})
        return rows

    def network_settings(self, container: Container) -> dict:
        net = container.network
        ports = net.ports if net.ports is not None else {}
        mode = self.host_config(container)["NetworkMode"]
        endpoint = {"IPAMConfig": None, "Links": None, "Aliases": None, "MacAddress": "", "DriverOpts": None,
                    "NetworkID": mode, "EndpointID": container.id if net.ip_address else "",
                    "Gateway": net.gateway, "IPAddress": net.ip_address, "IPPrefixLen": net.ip_prefix_len,
                    "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": None}
        return {"Bridge": net.bridge, "SandboxID": "", "SandboxKey": "", "HairpinMode": False,
                "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": ports,
                "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
                "EndpointID": endpoint["EndpointID"], "Gateway": net.gateway, "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "IPAddress": net.ip_address, "IPPrefixLen": net.ip_prefix_len,
                "IPv6Gateway": "", "MacAddress": "",
                "Networks": {} if mode in ("none", "") else {mode: endpoint}}

    def inspect(self, name: str) -> dict:
        container = self.containers.get(name)
        state = container.state
        return {
            "Id": container.id, "Created": container.created, "Path": container.path,
            "Args": list(container.args),
            "State": {"Status": state_status(container), "Running": state.running, "Paused": state.paused,
                      "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": state.pid,
                      "ExitCode": state.exit_code, "Error": "", "StartedAt": state.started_at,
                      "FinishedAt": state.finished_at},
            "Image": container.image,
            "ResolvConfPath": str(container.directory / "resolv.conf"),
            "HostnamePath": str(container.directory / "hostname"),
            "HostsPath": str(container.directory / "hosts"), "LogPath": str(container.log_path),
            "Name": container.name, "RestartCount": container.internal.restart_count or 0,
            "Driver": container.internal.graph_driver or "", "Platform": "linux", "MountLabel": "",
            "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
            "HostConfig": self.host_config(container),
            "GraphDriver": {"Data": None, "Name": container.internal.graph_driver or ""},
            "Mounts": self.mounts(container),
            "Config": container.config.to_api(VIEW),
            "NetworkSettings": self.network_settings(container),
        }

    def status(self, container: Container) -> str:
        """The list's ``Status``: ``Up 3 minutes``, ``Exited (0) 2 seconds ago``, ``Created``."""
        kind = state_status(container)
        if kind in ("running", "paused"):
            return self.legacy.status(container)
        if kind == "created":
            return "Created"
        ago = human_duration(time.time() - parse_time(container.state.finished_at))
        return f"Exited ({container.state.exit_code}) {ago} ago"

    def row(self, container: Container, size: bool) -> dict:
        ports = [{"IP": p["IP"], "PrivatePort": p["PrivatePort"], "PublicPort": p["PublicPort"], "Type": p["Type"]}
                 if p["PrivatePort"] else {"PrivatePort": p["PublicPort"], "Type": p["Type"]}
                 for p in port_rows(container) or []]
        host = self.host_config(container)
        row = {
            "Id": container.id, "Names": self.containers.names_of(container),
            # the name the client created it from, as Docker shows it, while that name is here
            "Image": container.config.image if self.containers.images.lookup(container.config.image or "-")
            else self.containers.image_name(container.image), "ImageID": container.image,
            "Command": " ".join([container.path, *container.args]),
            "Created": int(parse_time(container.created)), "Ports": ports,
            "Labels": dict(container.config.labels or {}), "State": state_status(container),
            "Status": self.status(container), "HostConfig": {"NetworkMode": host["NetworkMode"]},
            "NetworkSettings": {"Networks": self.network_settings(container)["Networks"]},
            "Mounts": self.mounts(container),
        }
        if size:
            row["SizeRw"] = self.legacy.size_rw(container)
            images = self.containers.images
            row["SizeRootFs"] = row["SizeRw"] + images.virtual_size(images.get(container.image))
        return row

    def list(self, all: bool = False, limit: int = -1, size: bool = False,
             filters: dict[str, list[str]] | None = None) -> list[dict]:
        """``GET /v1.NN/containers/json``: newest first; ``limit`` > 0 implies ``all``."""
        filters = filters or {}
        check_list_filters(filters)
        everything = all or limit > 0 or bool(filters.get("status")) or bool(filters.get("exited"))
        containers = self.containers.all()  # newest first
        before = self._position(filters.get("before"), containers)
        since = self._position(filters.get("since"), containers)
        rows = []
        for index, container in enumerate(containers):
            if before is not None and index <= before:
                continue
            if since is not None and index >= since:
                break
            if not everything and not container.state.running:
                continue
            if not self.matches(container, filters):
                continue
            if limit > 0 and len(rows) >= limit:
                break
            rows.append(self.row(container, size))
        return rows

    def _position(self, wanted: list[str] | None, containers: list[Container]) -> int | None:
        """Where the container ``wanted`` names is in the list (newest first): ``before`` and
        ``since`` are the ones made before and after it."""
        if not wanted:
            return None
        cid = self.containers.get(wanted[0]).id
        return next(i for i, c in enumerate(containers) if c.id == cid)

    def matches(self, container: Container, filters: dict[str, list[str]]) -> bool:
        """Docker's list filters: each key any of its values; all keys together."""
        names = [n.lstrip("/") for n in self.containers.names_of(container)]
        labels = container.config.labels or {}
        for key, wanted in filters.items():
            if not wanted or key in ("before", "since"):
                continue
            if key == "id" and not any(container.id.startswith(w) for w in wanted):
                return False
            if key == "name" and not any(re.search(w.lstrip("/"), n) for w in wanted for n in names):
                return False
            if key == "label" and not all(_label_matches(labels, w) for w in wanted):
                return False
            if key == "status" and state_status(container) not in wanted:
                return False
            if key == "exited" and (state_status(container) != "exited"
                                    or str(container.state.exit_code) not in wanted):
                return False
            if key == "ancestor" and not any(self._descends(container, w) for w in wanted):
                return False
        return True

    def _descends(self, container: Container, reference: str) -> bool:
        images = self.containers.images
        image = images.lookup(reference)
        return image is not None and any(i.id == image.id for i in images.ancestry(container.image))


def _label_matches(labels: dict, wanted: str) -> bool:
    key, sep, value = wanted.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == value


def check_list_filters(filters: dict[str, list[str]]) -> None:
    """400 for a filter Docker's list does not know, or a bad ``status``/``exited`` value."""
    for key, values in filters.items():
        if key not in (*LIST_FILTERS, "network", "volume", "health", "publish", "expose", "isolation", "is-task"):
            raise InvalidParameter(f"invalid filter '{key}'")
        if key in ("network", "volume", "health", "publish", "expose", "isolation", "is-task") and values:
            raise InvalidParameter(f"moorage does not support the container list filter '{key}' yet")
        if key == "status":
            for value in values:
                if value not in STATUSES:
                    raise InvalidParameter(f"invalid filter 'status={value}'")
        if key == "exited":
            for value in values:
                if not value.lstrip("-").isdigit():
                    raise InvalidParameter(f"invalid filter 'exited={value}'")


def label_filter(labels: dict, wanted: list[str]) -> bool:
    """Every ``key`` or ``key=value`` of ``wanted`` holds for ``labels`` (prune's ``label``)."""
    return all(_label_matches(labels, w) for w in wanted)


_DURATION = re.compile(r"([0-9]+(?:\.[0-9]*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def parse_until(value: str) -> float:
    """Docker's ``until``/``since`` filter values: a unix time (``1700000000.5``), an RFC 3339
    time, or a Go duration before now (``10m``, ``1h30m``)."""
    try:
        return float(value)
    except ValueError:
        pass
    parts = _DURATION.findall(value)
    if parts and "".join(n + u for n, u in parts) == value:
        return time.time() - sum(float(n) * _UNITS[u] for n, u in parts)
    try:
        return parse_time(value)
    except (ValueError, TypeError):
        raise InvalidParameter(f"invalid filter 'until={value}'") from None
