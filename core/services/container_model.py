"""The typed container model: a container's ``Config``, ``HostConfig``, ``NetworkSettings`` and
the state moorage keeps beside them, each field declared once, with its Go name.

Each model is a pydantic model whose fields carry their Go name as alias, in Go's field order,
with Go's zero values as defaults: ``to_api()`` gives the JSON Docker 0.6.5 gave (and
``config.json`` holds). A request body becomes a model through ``fold`` (Go's decoder: keys
matched case-insensitively, unknown ones ignored) and the type checks that a field's
annotation implies (``check_types``); the rules beyond types are in
``moorage.core.services.container_config``. Pydantic's own validation is not used: the 400
messages are Docker's, and a model is built with ``model_construct``.

A newer Docker field (``Labels``, ``Healthcheck``, ``Mounts``...) is one more annotated field
here; a view for one API version is a ``to_api`` that leaves fields out at the API's edge.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.network import Endpoint, PortBinding

#: The annotations whose values ``check_types`` checks, and the message naming what they must be.
#: Fields of any other annotation have rules of their own (``container_config``).
_STRINGS = list[str] | None
_OBJECT = dict[str, Any] | None
#: The view a ``to_api()`` without a version gives (the v1.6 one), and the first of today's.
LEGACY_VIEW = (1, 6)
MODERN_VIEW = (1, 24)
#: ``json_schema_extra`` of a field that today's API added, and of one it no longer shows.
MODERN_ONLY = {"since": MODERN_VIEW}
LEGACY_ONLY = {"until": MODERN_VIEW}
_KINDS: tuple[tuple[Any, str], ...] = (
    (_STRINGS, "a list of strings"), (int, "an integer"), (bool, "a boolean"), (str, "a string"),
    (_OBJECT, "an object"))


def _is_kind(value: Any, annotation: Any) -> bool:
    if annotation == _STRINGS:
        return value is None or (isinstance(value, list) and all(isinstance(v, str) for v in value))
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation == _OBJECT:
        return value is None or isinstance(value, dict)
    return isinstance(value, annotation)


@functools.cache
def _fields_for(cls: type[BaseModel], key: tuple[int, ...]) -> frozenset[str]:
    shown = set()
    for name, info in cls.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if tuple(extra.get("since", (0, 0))) <= key and ("until" not in extra or key < tuple(extra["until"])):
            shown.add(name)
    return frozenset(shown)


class GoModel(BaseModel):
    """A Go struct of the Docker API: fields aliased to their Go names, in Go's order."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True)

    #: lowercased Go name -> field name, for Go's case-insensitive key matching
    _by_lower: ClassVar[dict[str, str]]
    #: Go name -> field name
    _by_alias: ClassVar[dict[str, str]]
    #: Go's field order in today's API, when it differs from the model's (whose order is 1.6's)
    modern_order: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._by_alias = {f.alias or name: name for name, f in cls.model_fields.items()}
        cls._by_lower = {alias.lower(): name for alias, name in cls._by_alias.items()}

    @classmethod
    def go_names(cls) -> tuple[str, ...]:
        """The Go names of the fields, in Go's order."""
        return tuple(f.alias or name for name, f in cls.model_fields.items())

    @classmethod
    def fold(cls, data: Any, what: str) -> dict[str, Any]:
        """Field name -> value of the keys of ``data`` that name a field (the last of keys that
        differ only in case wins, as with Go's decoder); others are ignored."""
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise InvalidParameter(f"Bad parameter: the {what} must be a JSON object")
        values = {}
        for key, value in data.items():
            name = cls._by_lower.get(str(key).lower())
            if name is not None:
                values[name] = value
        return values

    @classmethod
    def check_types(cls, values: dict[str, Any]) -> None:
        """400 for a value whose type its field's annotation does not allow, checked kind by
        kind in ``_KINDS``'s order (lists, integers, booleans, strings, objects)."""
        for annotation, kind in _KINDS:
            for name, info in cls.model_fields.items():
                if info.annotation == annotation and name in values and not _is_kind(values[name], annotation):
                    raise InvalidParameter(f"Bad parameter: {info.alias} must be {kind}")

    @classmethod
    def from_values(cls, values: dict[str, Any]):
        """A model of checked values (field name -> value); the rest at their zero values."""
        return cls.model_construct(**values)

    @classmethod
    def from_go(cls, data: dict[str, Any] | None):
        """A model of what ``to_api`` wrote (``config.json``): keys are exact Go names."""
        by_alias = cls._by_alias
        return cls.model_construct(**{by_alias[k]: v for k, v in (data or {}).items() if k in by_alias})

    @classmethod
    def fields_for(cls, version: tuple[int, int]) -> frozenset[str]:
        """The field names an API ``version`` shows: those whose ``api`` range (a field's
        ``json_schema_extra``, ``{"since": (1, 24)}`` or ``{"until": (1, 24)}``) holds it."""
        return _fields_for(cls, tuple(version))

    def to_api(self, version: tuple[int, int] = LEGACY_VIEW) -> dict[str, Any]:
        """The JSON object an API ``version`` shows (by default the v1.6 one, which
        ``config.json`` held before newer fields existed), keys in Go's order (``modern_order``
        when the class gives one for today's versions); a new structure, nothing shared."""
        shown = self.fields_for(version)
        data = self.model_dump(by_alias=True, include=set(shown)) if len(shown) < len(type(self).model_fields) else \
            self.model_dump(by_alias=True)
        order = self.modern_order if tuple(version) >= MODERN_VIEW else ()
        if order:
            data = {k: data[k] for k in order if k in data} | {k: v for k, v in data.items() if k not in order}
        return data

    def to_disk(self) -> dict[str, Any]:
        """Every field, whatever the version that shows it (``config.json``)."""
        return self.model_dump(by_alias=True)

    def copy_deep(self):
        return self.model_copy(deep=True)


class ContainerConfig(GoModel):
    """The create ``Config`` of Docker 0.6.5 (also an image's ``config``), and the fields today's
    API added (shown from 1.24 on; the 1.6 view never shows them). From 1.24 on, the fields that
    moved to ``HostConfig`` are no longer shown here."""

    hostname: str = Field("", alias="Hostname")
    domainname: str = Field("", alias="Domainname")
    user: str = Field("", alias="User")
    memory: int = Field(0, alias="Memory", json_schema_extra=LEGACY_ONLY)
    memory_swap: int = Field(0, alias="MemorySwap", json_schema_extra=LEGACY_ONLY)
    cpu_shares: int = Field(0, alias="CpuShares", json_schema_extra=LEGACY_ONLY)
    attach_stdin: bool = Field(False, alias="AttachStdin")
    attach_stdout: bool = Field(False, alias="AttachStdout")
    attach_stderr: bool = Field(False, alias="AttachStderr")
    port_specs: list[str] | None = Field(None, alias="PortSpecs", json_schema_extra=LEGACY_ONLY)
    exposed_ports: dict[str, Any] | None = Field(None, alias="ExposedPorts")
    tty: bool = Field(False, alias="Tty")
    open_stdin: bool = Field(False, alias="OpenStdin")
    stdin_once: bool = Field(False, alias="StdinOnce")
    env: list[str] | None = Field(None, alias="Env")
    cmd: list[str] | None = Field(None, alias="Cmd")
    dns: list[str] | None = Field(None, alias="Dns", json_schema_extra=LEGACY_ONLY)
    image: str = Field("", alias="Image")
    volumes: dict[str, Any] | None = Field(None, alias="Volumes")
    volumes_from: str = Field("", alias="VolumesFrom", json_schema_extra=LEGACY_ONLY)
    working_dir: str = Field("", alias="WorkingDir")
    entrypoint: list[str] | None = Field(None, alias="Entrypoint")
    network_disabled: bool = Field(False, alias="NetworkDisabled")
    privileged: bool = Field(False, alias="Privileged", json_schema_extra=LEGACY_ONLY)
    #: ``{"Test": [...], "Interval": ns, "Timeout": ns, "StartPeriod": ns, "StartInterval": ns,
    #: "Retries": n}`` (stored and shown; moorage does not run the probe yet: docs/api.md)
    healthcheck: dict[str, Any] | None = Field(None, alias="Healthcheck", json_schema_extra=MODERN_ONLY)
    on_build: list[str] | None = Field(None, alias="OnBuild", json_schema_extra=MODERN_ONLY)
    labels: dict[str, Any] | None = Field(None, alias="Labels", json_schema_extra=MODERN_ONLY)
    stop_signal: str = Field("", alias="StopSignal", json_schema_extra=MODERN_ONLY)
    stop_timeout: Any = Field(None, alias="StopTimeout", json_schema_extra=MODERN_ONLY)

    modern_order: ClassVar[tuple[str, ...]] = (
        "Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty",
        "OpenStdin", "StdinOnce", "Env", "Cmd", "Healthcheck", "Image", "Volumes", "WorkingDir", "Entrypoint",
        "NetworkDisabled", "OnBuild", "Labels", "StopSignal", "StopTimeout")


class RestartPolicy(GoModel):
    name: str = Field("no", alias="Name")
    maximum_retry_count: int = Field(0, alias="MaximumRetryCount")


class HostConfig(GoModel):
    """Start's ``HostConfig`` of the 1.6 API (the first seven fields), and the fields beyond 1.6
    that today's docker CLI sends in create's body and moorage carries out (docs/api.md); a 1.6
    client never sends those, so their zero values change nothing for it."""

    binds: list[str] | None = Field(None, alias="Binds")
    container_id_file: str = Field("", alias="ContainerIDFile")
    #: ``[{"Key": ..., "Value": ...}]`` (the v1.6 docs showed a map, which Docker could not decode)
    lxc_conf: list[dict[str, Any]] | None = Field(None, alias="LxcConf")
    privileged: bool = Field(False, alias="Privileged")
    port_bindings: dict[str, Any] | None = Field(None, alias="PortBindings")
    links: list[str] | None = Field(None, alias="Links")
    publish_all_ports: bool = Field(False, alias="PublishAllPorts")
    volumes_from: list[str] | None = Field(None, alias="VolumesFrom")
    dns: list[str] | None = Field(None, alias="Dns")
    dns_search: list[str] | None = Field(None, alias="DnsSearch")
    extra_hosts: list[str] | None = Field(None, alias="ExtraHosts")
    memory: int = Field(0, alias="Memory")
    memory_swap: int = Field(0, alias="MemorySwap")
    cpu_shares: int = Field(0, alias="CpuShares")
    network_mode: str = Field("", alias="NetworkMode")
    cap_add: list[str] | None = Field(None, alias="CapAdd")
    cap_drop: list[str] | None = Field(None, alias="CapDrop")
    auto_remove: bool = Field(False, alias="AutoRemove")
    restart_policy: RestartPolicy | None = Field(None, alias="RestartPolicy")
    read_only_rootfs: bool = Field(False, alias="ReadonlyRootfs")
    #: ``[height, width]`` of a tty
    console_size: list[int] | None = Field(None, alias="ConsoleSize")


class NetworkSettings(GoModel):
    """Inspect's ``NetworkSettings``: a running container's address and published ports."""

    ip_address: str = Field("", alias="IPAddress")
    ip_prefix_len: int = Field(0, alias="IPPrefixLen")
    gateway: str = Field("", alias="Gateway")
    bridge: str = Field("", alias="Bridge")
    port_mapping: Any = Field(None, alias="PortMapping")
    #: ``"80/tcp"`` -> ``[{"HostIp": ..., "HostPort": ...}]``, or None when only exposed
    ports: dict[str, Any] | None = Field(None, alias="Ports")

    @classmethod
    def from_endpoint(cls, endpoint: Endpoint) -> NetworkSettings:
        ports = None
        if endpoint.ports:
            ports = {k: ([{"HostIp": b.host_ip, "HostPort": str(b.host_port)} for b in v] if v else None)
                     for k, v in endpoint.ports.items()}
        return cls.from_values({"ip_address": endpoint.ip_address, "ip_prefix_len": endpoint.ip_prefix_len,
                                "gateway": endpoint.gateway, "bridge": endpoint.bridge, "ports": ports})



class InternalState(GoModel):
    """What moorage keeps beside the inspect object (``config.json``'s ``Moorage``): the drivers
    a container was made and last started with, its network endpoint, its restart count. A key
    is written only once it has a value, as it was when these were a dict."""

    graph_driver: str | None = Field(None, alias="GraphDriver")
    #: its image's shared init layer (containers made before they were shared have none)
    init_layer: str | None = Field(None, alias="InitLayer")
    exec_driver: str | None = Field(None, alias="ExecDriver")
    network_driver: str | None = Field(None, alias="NetworkDriver")
    endpoint: Endpoint | None = Field(None, alias="Endpoint")
    #: starts by the restart policy since the last start asked for by a client
    restart_count: int | None = Field(None, alias="RestartCount")

    @field_serializer("endpoint")
    def _endpoint(self, endpoint: Endpoint | None) -> dict | None:
        return None if endpoint is None else endpoint_to_json(endpoint)

    def to_disk(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)

    @classmethod
    def from_disk(cls, data: dict) -> InternalState:
        state = cls.from_go(data)
        if isinstance(state.endpoint, dict):
            state.endpoint = endpoint_from_json(state.endpoint)
        return state


def endpoint_to_json(endpoint: Endpoint) -> dict:
    return {"ip_address": endpoint.ip_address, "ip_prefix_len": endpoint.ip_prefix_len,
            "gateway": endpoint.gateway, "bridge": endpoint.bridge,
            "ports": {k: ([[b.host_ip, b.host_port] for b in v] if v is not None else None)
                      for k, v in endpoint.ports.items()}}


def endpoint_from_json(data: dict) -> Endpoint:
    return Endpoint(ip_address=data.get("ip_address", ""), ip_prefix_len=data.get("ip_prefix_len", 0),
                    gateway=data.get("gateway", ""), bridge=data.get("bridge", ""),
                    ports={k: ([PortBinding(ip, port) for ip, port in v] if v is not None else None)
                           for k, v in (data.get("ports") or {}).items()})
