"""Container configs as the v1.6 API carries them: normalising, merging with the image config,
host configs, port specs and the environment (reference §2.3, §3.1).

Keys are Go field names; Go's decoder matched them case-insensitively and ignored unknown
ones, so ``normalize_config`` does the same.
"""

from __future__ import annotations

import copy
import posixpath
from typing import Any

from .errors import InvalidParameter
from .security import capability_name
from .validation import check_link_alias, check_path, check_text, shown

MIN_MEMORY = 524288
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The create ``Config`` of Docker 0.6.5, in Go's field order, with zero values.
CONFIG_FIELDS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "Memory": 0, "MemorySwap": 0, "CpuShares": 0,
    "AttachStdin": False, "AttachStdout": False, "AttachStderr": False, "PortSpecs": None,
    "ExposedPorts": None, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Dns": None, "Image": "", "Volumes": None, "VolumesFrom": "", "WorkingDir": "", "Entrypoint": None,
    "NetworkDisabled": False, "Privileged": False,
}

HOST_CONFIG_FIELDS: dict[str, Any] = {
    "Binds": None, "ContainerIDFile": "", "LxcConf": None, "Privileged": False, "PortBindings": None,
    "Links": None, "PublishAllPorts": False, "CapAdd": None, "CapDrop": None,
}

_LIST_FIELDS = ("PortSpecs", "Env", "Cmd", "Dns", "Entrypoint")
_INT_FIELDS = ("Memory", "MemorySwap", "CpuShares")
_BOOL_FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce",
                "NetworkDisabled", "Privileged")
_STR_FIELDS = ("Hostname", "Domainname", "User", "Image", "VolumesFrom", "WorkingDir")


def _by_lower(fields: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): k for k in fields}


def _fold(data: Any, fields: dict[str, Any], what: str) -> dict[str, Any]:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidParameter(f"Bad parameter: the {what} must be a JSON object")
    names = _by_lower(fields)
    out = copy.deepcopy(fields)
    for key, value in data.items():
        name = names.get(str(key).lower())
        if name is not None:
            out[name] = value
    return out


def normalize_config(data: Any) -> dict[str, Any]:
    """A full Config from a request body: known keys matched case-insensitively, types checked."""
    config = _fold(data, CONFIG_FIELDS, "container config")
    for key in _LIST_FIELDS:
        value = config[key]
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InvalidParameter(f"Bad parameter: {key} must be a list of strings")
    for key in _INT_FIELDS:
        if not isinstance(config[key], int) or isinstance(config[key], bool):
            raise InvalidParameter(f"Bad parameter: {key} must be an integer")
    for key in _BOOL_FIELDS:
        if not isinstance(config[key], bool):
            raise InvalidParameter(f"Bad parameter: {key} must be a boolean")
    for key in _STR_FIELDS:
        if not isinstance(config[key], str):
            raise InvalidParameter(f"Bad parameter: {key} must be a string")
    for key in ("ExposedPorts", "Volumes"):
        if config[key] is not None and not isinstance(config[key], dict):
            raise InvalidParameter(f"Bad parameter: {key} must be an object")
    return config


def normalize_host_config(data: Any) -> dict[str, Any]:
    host = _fold(data, HOST_CONFIG_FIELDS, "host config")
    for key in ("Binds", "Links", "CapAdd", "CapDrop"):
        value = host[key]
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InvalidParameter(f"Bad parameter: {key} must be a list of strings")
    lxc = host["LxcConf"]
    if lxc is not None:
        if not isinstance(lxc, list) or not all(isinstance(e, dict) and "Key" in e for e in lxc):
            # the v1.6 docs showed a map, which Docker could not decode either
            raise InvalidParameter('Bad parameter: LxcConf must be a list of {"Key": ..., "Value": ...}')
    if host["PortBindings"] is not None and not isinstance(host["PortBindings"], dict):
        raise InvalidParameter("Bad parameter: PortBindings must be an object")
    for key in ("CapAdd", "CapDrop"):
        for name in host[key] or []:
            try:
                capability_name(name)
            except InvalidParameter as exc:
                raise InvalidParameter(f"Bad parameter: {key}: {exc}") from None
    return host


def port_key(spec: str) -> str:
    """``"80"`` -> ``"80/tcp"``; ``"53/udp"`` stays; the port must be a number."""
    port, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if not port.isdigit() or not 0 < int(port) < 65536 or proto not in ("tcp", "udp"):
        raise InvalidParameter(f"Bad parameter: invalid port {spec!r}")
    return f"{int(port)}/{proto}"


def parse_port_spec(spec: str) -> tuple[str, str, str]:
    """A ``PortSpecs`` entry (``80``, ``80/udp``, ``8080:80``, ``ip:8080:80``) ->
    (container port key, host ip, host port)."""
    parts = spec.split(":")
    if len(parts) == 1:
        return port_key(parts[0]), "", ""
    if len(parts) == 2:
        return port_key(parts[1]), "", parts[0]
    if len(parts) == 3:
        return port_key(parts[2]), parts[0], parts[1]
    raise InvalidParameter(f"Bad parameter: invalid port specification {spec!r}")


def merge_with_image(config: dict[str, Any], image_config: dict[str, Any] | None) -> list[str]:
    """Merge the image's config into a create config in place (reference §2.3 step 2).
    Returns the warnings to answer with."""
    warnings: list[str] = []
    image = normalize_config(image_config) if image_config else None
    deprecated = any(":" in s for s in (config.get("PortSpecs") or []))
    if image is not None:
        for key in ("User", "Memory", "MemorySwap", "CpuShares", "WorkingDir", "VolumesFrom"):
            if not config[key]:
                config[key] = image[key]
        for key in ("Tty", "OpenStdin", "StdinOnce"):
            config[key] = bool(config[key] or image[key])
        for key in ("Cmd", "Entrypoint"):
            if not config[key]:
                config[key] = image[key]
        if not config["ExposedPorts"]:
            config["ExposedPorts"] = copy.deepcopy(image["ExposedPorts"])
        keys = {e.split("=", 1)[0] for e in config["Env"] or []}
        extra = [e for e in image["Env"] or [] if e.split("=", 1)[0] not in keys]
        if extra:
            config["Env"] = (config["Env"] or []) + extra
        if image["Dns"]:
            config["Dns"] = (config["Dns"] or []) + image["Dns"]
        if image["Volumes"]:
            config["Volumes"] = {**image["Volumes"], **(config["Volumes"] or {})}
        deprecated = deprecated or any(":" in s for s in (image["PortSpecs"] or []))
        specs = (image["PortSpecs"] or [])
    else:
        specs = []
    # PortSpecs become ExposedPorts (host parts dropped) and are then cleared
    exposed = dict(config["ExposedPorts"] or {})
    for spec in (config["PortSpecs"] or []) + specs:
        exposed[parse_port_spec(spec)[0]] = {}
    for key in list(exposed):
        normal = port_key(key)
        if normal != key:
            exposed[normal] = exposed.pop(key)
    config["ExposedPorts"] = exposed or None
    config["PortSpecs"] = None
    if deprecated:
        warnings.append("The mapping to public ports on your host has been deprecated. Use -p to publish the ports.")
    return warnings


def validate(config: dict[str, Any]) -> None:
    if config["Memory"] and config["Memory"] < MIN_MEMORY:
        raise InvalidParameter(f"Memory limit must be given in bytes (minimum {MIN_MEMORY} bytes)")
    if config["MemorySwap"] < -1:
        raise InvalidParameter("Bad parameter: MemorySwap must be -1, 0 or a number of bytes")
    if config["CpuShares"] < 0:
        raise InvalidParameter("Bad parameter: CpuShares cannot be negative")
    for entry in config["Env"] or []:
        if not entry or entry.startswith("="):
            raise InvalidParameter(f"Bad parameter: invalid environment entry {entry!r}")
        check_text(entry, "Env entry")
    for key in ("Cmd", "Entrypoint"):
        for arg in config[key] or []:
            check_text(arg, f"{key} argument")
    for key in ("Hostname", "Domainname", "User", "VolumesFrom"):
        check_text(config[key], key)
    check_path(config["WorkingDir"], "WorkingDir")
    for path in config["Volumes"] or {}:
        check_path(path, "volume path")
        if not path.startswith("/") or posixpath.normpath(path) == "/":
            raise InvalidParameter(f"Bad parameter: invalid volume path {path!r}")


def validate_host_config(host: dict[str, Any]) -> None:
    """What a start's host config names: bind paths (``parse_bind``) and link specs, checked
    before anything of it is recorded."""
    for spec in host["Binds"] or []:
        parse_bind(spec)
    for spec in host["Links"] or []:
        parse_link(spec)


def command(config: dict[str, Any]) -> tuple[str, list[str]]:
    """``(Path, Args)`` from Entrypoint and Cmd (reference §2.3 step 3)."""
    entrypoint, cmd = config["Entrypoint"] or [], config["Cmd"]
    if entrypoint and cmd is None:
        config["Cmd"] = cmd = []
    if not entrypoint and not cmd:
        raise InvalidParameter("No command specified")
    argv = list(entrypoint) + list(cmd or [])
    return argv[0], argv[1:]


def environment(config: dict[str, Any], link_env: list[str] = ()) -> list[str]:
    """The process environment in Docker's order; later entries win (reference §3.1)."""
    env = ["HOME=/", f"PATH={DEFAULT_PATH}", "container=moorage", f"HOSTNAME={config['Hostname']}"]
    if config["Tty"]:
        env.append("TERM=xterm")
    env += list(link_env)
    env += list(config["Env"] or [])
    merged: dict[str, str] = {}
    for entry in env:
        key, _, value = entry.partition("=")
        merged.pop(key, None)
        merged[key] = value
    return [f"{k}={v}" for k, v in merged.items()]


def parse_bind(spec: str) -> tuple[str, str, bool]:
    """A ``Binds`` entry ``src:dst[:mode]`` -> (source, destination, readonly)."""
    parts = spec.split(":")
    if len(parts) == 2:
        source, dest, mode = parts[0], parts[1], "rw"
    elif len(parts) == 3:
        source, dest, mode = parts
    else:
        raise InvalidParameter(f"Invalid bind specification: {spec}")
    if dest in ("/", ".") or not dest:
        raise InvalidParameter(f"Illegal bind destination: {dest}")
    if posixpath.normpath("/" + source.lstrip("/")) == "/":  # "//", "/./" and "/.." too
        raise InvalidParameter(f"Invalid bind mount '{spec}' : source can't be '/'")
    if not source.startswith("/"):
        raise InvalidParameter(f"Invalid bind mount '{spec}' : source must be an absolute path")
    check_path(spec, "bind")  # after Docker's own refusals, which keep their messages
    return source, posixpath.normpath(dest), mode.lower() != "rw"


def parse_link(spec: str) -> tuple[str, str]:
    parts = spec.split(":")
    if len(parts) != 2 or not all(parts):
        raise InvalidParameter(f"Invalid link specification: {shown(spec)}")
    check_text(parts[0], "link target")
    check_link_alias(parts[1])
    return parts[0], parts[1]
