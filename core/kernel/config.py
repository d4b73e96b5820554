"""Daemon configuration: the embedded defaults, a TOML file, then flags (flag > file > default).

The file has a ``[daemon]`` table, a ``[plugins]`` table, a ``[security]`` table (the default
confinement of containers, ``core.security``), and one table per driver family
(``[graph]``, ``[exec]``, ``[network]``, ``[registry]``, ``[volume]``) holding the family's ``driver`` and
``priority`` keys, family-wide keys the drivers read (``default`` registry...), and one
sub-table per driver (``[graph.overlay]``) validated by that driver's ``Options`` model when it
is selected. A wrong file is refused with its path, line and key.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from moorage.core import __version__
from moorage.core.sdk.driver import Bytes, DaemonSettings, DriverSettings
from moorage.core.sdk.errors import ConfigError
from moorage.core.sdk.hookspecs import DRIVER_FAMILIES
from moorage.core.sdk.security import (
    BUILTIN_PROFILE,
    DEFAULT_CAPABILITIES,
    DEFAULT_MASKED_PATHS,
    DEFAULT_READONLY_PATHS,
)

DEFAULT_CONFIG_PATH = Path("/etc/moorage/daemon.toml")

DEFAULT_CONFIG_TOML = """\
# moorage's embedded defaults. A file given with --config (default /etc/moorage/daemon.toml)
# overrides these key by key, and daemon flags override the file.

[daemon]
hosts = ["unix:///var/run/moorage.sock"]
root = "/var/lib/moorage"
pidfile = "/var/run/moorage.pid"
debug = false
api_enable_cors = false
restart = true          # -r: restart containers that were running when the daemon stopped
dns = []                # --dns: servers written to every container's resolv.conf
default_ip = "0.0.0.0"  # the HostIp of a port binding that names none
# TLS on tcp:// listeners (Docker 0.10's flags; unix sockets stay plain). An empty path means
# $DOCKER_CERT_PATH/ca.pem, cert.pem, key.pem, or ~/.docker/ when that is unset.
tls = false             # --tls: serve TCP over TLS
tlsverify = false       # --tlsverify: TLS, and only clients whose certificate the CA signed
tlscacert = ""          # --tlscacert
tlscert = ""            # --tlscert
tlskey = ""             # --tlskey
allow_unauthenticated_tcp = false  # listen on a non-loopback tcp:// address without --tlsverify
api_cors_origins = []   # with api_enable_cors: the origins allowed; empty allows any ("*")
api_hostnames = []      # names accepted in the Host header on TCP besides IPs and localhost

[plugins]
blocked = []            # entry-point names never to load
enable = []             # entry points to load even with MOORAGE_DISABLE_PLUGIN_AUTOLOAD set

[security]
# What every non-privileged container is held to (docs/security.md); Docker's defaults unless
# changed here. Per container, start's HostConfig CapAdd/CapDrop change the capabilities.
# capabilities = ["CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
#                 "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"]
# seccomp_profile = "default"   # "default", "unconfined" or a profile file in Docker's JSON format
# masked_paths = [...]          # below /proc or /sys
# readonly_paths = [...]

[graph]
# driver = "overlay"    # -s; unset: the first supported by priority
[exec]
# driver = "native"     # -e
[network]
# driver = "bridge"
[registry]
# driver = "v2"
[volume]
# driver = "local"    # the default Driver of POST /volumes/create; every working volume driver serves

[logs]                  # every container's JSON log (docs/config.md)
max-size = "100m"       # a log file is rotated when it would grow beyond this
max-file = 5            # files kept per container, the current one included
"""

FAMILIES = DRIVER_FAMILIES


class LogsSection(BaseModel):
    """``[logs]``: the bounds of every container's log (``moorage.core.sdk.logs``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    max_size: Bytes = Field(100 << 20, alias="max-size", ge=1 << 12)
    max_file: int = Field(5, alias="max-file", ge=1, le=100)


class DaemonSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hosts: list[str]
    root: Path
    pidfile: Path | None = None
    debug: bool = False
    api_enable_cors: bool = False
    restart: bool = True
    dns: list[str] = []
    default_ip: str = "0.0.0.0"
    tls: bool = False
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    allow_unauthenticated_tcp: bool = False
    api_cors_origins: list[str] = []
    api_hostnames: list[str] = []


class PluginsSection(BaseModel):
    model_config = ConfigDict(extra="forbid")
    blocked: list[str] = []
    enable: list[str] = []


class SecuritySection(BaseModel):
    """``[security]``: the default confinement (``core.security.SecurityPolicy`` checks the values)."""

    model_config = ConfigDict(extra="forbid")
    capabilities: list[str] = list(DEFAULT_CAPABILITIES)
    seccomp_profile: str = BUILTIN_PROFILE
    masked_paths: list[str] = list(DEFAULT_MASKED_PATHS)
    readonly_paths: list[str] = list(DEFAULT_READONLY_PATHS)


class FamilySection(BaseModel):
    """``driver``/``priority``, family-wide settings, and driver sub-tables (dicts)."""

    model_config = ConfigDict(extra="allow")
    driver: str | None = None
    priority: list[str] | None = None

    def driver_sections(self) -> dict[str, dict]:
        return {k: v for k, v in (self.model_extra or {}).items() if isinstance(v, dict)}

    def settings(self) -> dict[str, Any]:
        """Family-wide keys other than driver, priority and driver sub-tables."""
        return {k: v for k, v in (self.model_extra or {}).items() if not isinstance(v, dict)}


class DaemonConfig:
    """The effective configuration. ``source`` names where it came from, for error messages."""

    def __init__(self, data: dict, source: str, text: str = "") -> None:
        self.data = data
        self.source = source
        self._text = text
        self.daemon = self._validate(DaemonSection, "daemon")
        self.plugins = self._validate(PluginsSection, "plugins")
        self.security = self._validate(SecuritySection, "security")
        self.logs = self._validate(LogsSection, "logs")
        self.families = {f: self._validate(FamilySection, f) for f in FAMILIES}
        unknown = sorted(set(data) - {"daemon", "plugins", "security", "logs", *FAMILIES})
        if unknown:
            raise ConfigError(f"{self.where(unknown[0], None)}: unknown section [{unknown[0]}]")

    def _validate(self, model: type[BaseModel], section: str):
        try:
            return model.model_validate(self.data.get(section) or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "?"
            msg = "unknown key" if first["type"] == "extra_forbidden" else first["msg"]
            top = key.split(".")[0]
            raise ConfigError(f"{self.where(section, top)}: key {section}.{key}: {msg}") from None

    def where(self, section: str, key: str | None) -> str:
        line = locate(self._text, section, key) if self._text else None
        return f"{self.source}, line {line}" if line else self.source

    def family(self, name: str) -> FamilySection:
        return self.families[name]

    def driver_settings(self, family: str, root: Path) -> DriverSettings:
        """What every driver of ``family`` is given on daemon root ``root`` (``DriverFamily``
        makes each driver's ``DriverContext`` of it)."""
        daemon = DaemonSettings(root=root, debug=self.daemon.debug, default_ip=self.daemon.default_ip,
                                version=__version__)
        return DriverSettings(daemon, self.family(family).settings())

    def driver_section_error(self, family: str, driver: str) -> str:
        return self.where(f"{family}.{driver}", None)

    def without_credentials(self) -> dict:
        """A copy of the effective configuration without the values of keys that name a
        credential (``password``, ``token``, ``secret``, ``auth``...), for plugins and logs."""
        return _without_credentials(self.data)


CREDENTIAL_WORDS = ("password", "passwd", "token", "secret", "auth", "credential")


def _without_credentials(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_credentials(v) for k, v in value.items()
                if not any(word in str(k).lower() for word in CREDENTIAL_WORDS)}
    if isinstance(value, list):
        return [_without_credentials(v) for v in value]
    return copy.deepcopy(value)


def locate(text: str, section: str, key: str | None) -> int | None:
    """The 1-based line of ``key`` in table ``section`` of a TOML text (or of the table)."""
    current = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        header = re.match(r"^\[([^\[\]]+)\]", line)
        if header:
            current = header.group(1).strip()
            if key is None and current == section:
                return number
            continue
        if key is not None and current == section and re.match(rf"^\"?{re.escape(key)}\"?\s*=", line):
            return number
    return None


def deep_merge(base: dict, override: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def set_path(data: dict, dotted: str, value: Any) -> None:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def parse_toml(text: str, source: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load(path: Path | None, overrides: Mapping[str, Any] = (), required: bool = False) -> DaemonConfig:
    """Defaults, then the file at ``path`` (if it exists, or always when ``required``), then
    ``overrides`` (dotted keys from flags, e.g. ``{"daemon.root": "/x"}``)."""
    data = parse_toml(DEFAULT_CONFIG_TOML, "embedded defaults")
    source, text = "embedded defaults", ""
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            if required:
                raise ConfigError(f"config file {path} does not exist") from None
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
        else:
            source = str(path)
            file_data = parse_toml(text, source)
            # validate the file alone first so that errors point into it
            DaemonConfig(deep_merge(data, file_data), source, text)
            data = deep_merge(data, file_data)
    for dotted, value in dict(overrides).items():
        set_path(data, dotted, value)
    return DaemonConfig(data, source, text)
