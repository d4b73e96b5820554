"""Container configs as the v1.6 API carries them: normalising, merging with the image config,
host configs, port specs and the environment (reference §2.3, §3.1).

Keys are Go field names; Go's decoder matched them case-insensitively and ignored unknown
ones, so ``normalize_config`` does the same.
"""

from __future__ import annotations

import copy
import logging
import posixpath
from typing import Any

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.security import capability_name
from moorage.core.sdk.validation import check_host_path, check_hostname, check_link_alias, check_text, clean_path, shown

log = logging.getLogger(__name__)

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
    "Links": None, "PublishAllPorts": False,
    # beyond 1.6: what today's docker CLI sends in create's HostConfig and moorage carries out
    # (docs/api.md); a 1.6 client never sends them, so their zero values change nothing for it
    "VolumesFrom": None, "Dns": None, "DnsSearch": None, "ExtraHosts": None, "Memory": 0, "MemorySwap": 0,
    "CpuShares": 0, "NetworkMode": "", "CapAdd": None, "CapDrop": None, "AutoRemove": False,
    "RestartPolicy": None, "ReadonlyRootfs": False, "ConsoleSize": None,
}

#: Values of fields moorage does not carry out that still mean "nothing asked for": today's
#: docker CLI sends every field of its HostConfig, most of them at these defaults.
_UNSUPPORTED_DEFAULTS: dict[str, tuple] = {
    "MemorySwappiness": (-1,), "Isolation": ("default",), "CgroupnsMode": ("private", "host"),
    "IpcMode": ("private", "shareable"), "LogConfig": ({"Type": "json-file", "Config": {}},),
}

#: Every field Docker's ``Config`` and ``HostConfig`` have had, API 1.0 through 1.47 (the
#: ``definitions`` of moby's ``docs/api/v1.NN.yaml``), lowercased. Of a body's keys, one in these
#: that moorage does not carry out is refused by name (it is an option the client asked for);
#: any other key is ignored, as Go's decoder ignores it in every Docker (the 2013 DockerUI sends
#: ``{"id": ...}`` to start; a newer client may send a field a later API adds).
DOCKER_CONFIG_KEYS = frozenset(k.lower() for k in (
    *CONFIG_FIELDS, "ArgsEscaped", "Cpuset", "Healthcheck", "Labels", "MacAddress", "OnBuild", "Shell",
    "StopSignal", "StopTimeout"))
DOCKER_HOST_CONFIG_KEYS = frozenset(k.lower() for k in (
    *HOST_CONFIG_FIELDS, "Annotations", "BlkioDeviceReadBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps", "BlkioWeight", "BlkioWeightDevice", "Capabilities", "Cgroup", "CgroupParent",
    "CgroupnsMode", "CpuCount", "CpuPercent", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
    "CpusetCpus", "CpusetMems", "DeviceCgroupRules", "DeviceRequests", "Devices", "DiskQuota", "DnsOptions",
    "GroupAdd", "IOMaximumBandwidth", "IOMaximumIOps", "Init", "IpcMode", "Isolation", "KernelMemory",
    "KernelMemoryTCP", "LogConfig", "MaskedPaths", "MemoryReservation", "MemorySwappiness", "Mounts", "NanoCpus",
    "OomKillDisable", "OomScoreAdj", "PidMode", "PidsLimit", "ReadonlyPaths", "Runtime", "SecurityOpt", "ShmSize",
    "StorageOpt", "Sysctls", "Tmpfs", "UTSMode", "Ulimits", "UsernsMode", "VolumeDriver"))

NETWORK_MODES = ("", "default", "bridge", "host", "none")
RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")

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
    _check_modern_host_fields(host)
    return host


def _given_but_unsupported(data: Any, supported: Any, docker_keys: frozenset[str], what: str) -> list[str]:
    """The keys of ``data`` that Docker knows, moorage does not carry out, and that were given
    (not a zero value nor a default): each one is refused by name rather than dropped. Keys
    Docker does not know are ignored, as its decoder ignores them (logged at debug)."""
    if not isinstance(data, dict):
        return []
    known = {k.lower() for k in supported}
    given = []
    for key, value in data.items():
        name = str(key).lower()
        if name in known:
            continue
        if name not in docker_keys:
            log.debug("%s: ignoring the unknown key %s, as Docker does", what, shown(str(key)))
        elif not _is_unset(value) and value not in _UNSUPPORTED_DEFAULTS.get(str(key), ()):
            given.append(str(key))
    return sorted(given)


def unsupported_host_fields(data: Any) -> list[str]:
    """The ``HostConfig`` fields given that moorage does not carry out (``_given_but_unsupported``)."""
    return _given_but_unsupported(data, HOST_CONFIG_FIELDS, DOCKER_HOST_CONFIG_KEYS, "HostConfig")


def _is_unset(value: Any) -> bool:
    """Go's zero values, also nested (``{"Type": "", "Config": {}}``, ``[0, 0]``)."""
    if value is None or value is False or value == 0 or value == "":
        return True
    if isinstance(value, list):
        return all(_is_unset(v) for v in value)
    if isinstance(value, dict):
        return all(_is_unset(v) for v in value.values())
    return False


def _check_modern_host_fields(host: dict[str, Any]) -> None:
    for key in ("Dns", "DnsSearch", "ExtraHosts", "CapAdd", "CapDrop"):
        value = host[key]
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise InvalidParameter(f"Bad parameter: {key} must be a list of strings")
    volumes_from = host["VolumesFrom"]
    if isinstance(volumes_from, str):  # the 1.6 Config's comma-separated form
        host["VolumesFrom"] = volumes_from = [v for v in volumes_from.split(",") if v.strip()] or None
    if volumes_from is not None and not (isinstance(volumes_from, list)
                                         and all(isinstance(v, str) for v in volumes_from)):
        raise InvalidParameter("Bad parameter: VolumesFrom must be a list of strings")
    for key in ("Memory", "MemorySwap", "CpuShares"):
        if not isinstance(host[key], int) or isinstance(host[key], bool):
            raise InvalidParameter(f"Bad parameter: {key} must be an integer")
    for key in ("AutoRemove", "ReadonlyRootfs"):
        if not isinstance(host[key], bool):
            raise InvalidParameter(f"Bad parameter: {key} must be a boolean")
    mode = host["NetworkMode"]
    if not isinstance(mode, str):
        raise InvalidParameter("Bad parameter: NetworkMode must be a string")
    if mode.startswith("container:"):
        raise InvalidParameter(f"NetworkMode {mode!r} is not supported: moorage's network drivers cannot "
                               "join another container's network namespace")
    if mode not in NETWORK_MODES:
        raise InvalidParameter(f"NetworkMode {mode!r} is not supported: use bridge, default, host or none")
    for entry in host["ExtraHosts"] or []:
        parse_extra_host(entry)
    size = host["ConsoleSize"]
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 65535 for n in size)):
        raise InvalidParameter("Bad parameter: ConsoleSize must be [height, width], each 0 to 65535")
    policy = host["RestartPolicy"]
    if policy is not None:
        name, retries = restart_policy(policy)
        host["RestartPolicy"] = {"Name": name, "MaximumRetryCount": retries}


def console_size(config: dict[str, Any], host: dict[str, Any]) -> tuple[int, int] | None:
    """The tty size a container starts with (``HostConfig.ConsoleSize``, which today's CLI sends
    from a terminal), or None: no tty, or no size given."""
    size = host.get("ConsoleSize")
    if not config["Tty"] or not size or not all(size):
        return None
    return size[0], size[1]


def restart_policy(policy: Any) -> tuple[str, int]:
    """``(name, maximum retry count)`` of a ``RestartPolicy`` object (``on-failure:N`` also
    accepted as the name, as the CLI's flag reads)."""
    if policy is None:
        return "no", 0
    if not isinstance(policy, dict):
        raise InvalidParameter('Bad parameter: RestartPolicy must be {"Name": ..., "MaximumRetryCount": ...}')
    name = policy.get("Name") or ""
    retries = policy.get("MaximumRetryCount") or 0
    if not isinstance(name, str) or not isinstance(retries, int) or isinstance(retries, bool):
        raise InvalidParameter("Bad parameter: RestartPolicy has a string Name and an integer MaximumRetryCount")
    if ":" in name:
        name, _, count = name.partition(":")
        if not count.isdigit():
            raise InvalidParameter(f"Bad parameter: invalid restart policy {policy['Name']!r}")
        retries = int(count)
    if name not in RESTART_POLICIES:
        raise InvalidParameter(f"Bad parameter: unknown restart policy {name!r}: use no, always, on-failure[:N] "
                               "or unless-stopped")
    if retries < 0:
        raise InvalidParameter("Bad parameter: MaximumRetryCount cannot be negative")
    if retries and name != "on-failure":
        raise InvalidParameter(f"Bad parameter: maximum retry count cannot be used with restart policy {name!r}")
    return name or "no", retries


def parse_extra_host(entry: str) -> tuple[str, str]:
    """An ``ExtraHosts`` entry ``name:address`` (the address may be IPv6, so the first colon
    splits) -> (name, address)."""
    import ipaddress

    name, sep, address = entry.partition(":")
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise InvalidParameter(f"Bad parameter: invalid ExtraHosts entry {entry!r}: want name:address") from None
    if not sep or not name or any(c.isspace() for c in name):
        raise InvalidParameter(f"Bad parameter: invalid ExtraHosts entry {entry!r}: want name:address")
    return name, address


def check_supported_config(data: Any) -> None:
    """400 naming every given create-body field of Docker's ``Config`` that moorage does not
    carry out: today's CLI sends ``Labels``, ``StopSignal``, ``Healthcheck``... which would
    otherwise be dropped in silence. Zero values are not "given"; keys Docker does not know are
    ignored."""
    given = _given_but_unsupported(data, (*CONFIG_FIELDS, "HostConfig", "NetworkingConfig"), DOCKER_CONFIG_KEYS,
                                   "create")
    if given:
        raise InvalidParameter(f"create: moorage does not support the Config field(s) {', '.join(given)} "
                               "that were given; remove the option(s) and try again")


def check_supported(data: Any, what: str) -> None:
    """400 naming every given host config field moorage does not carry out."""
    unsupported = unsupported_host_fields(data)
    if unsupported:
        raise InvalidParameter(f"{what}: moorage does not support the HostConfig field(s) {', '.join(unsupported)} "
                               "that were given; remove the option(s) and try again")


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
            raise InvalidParameter(f"Bad parameter: invalid environment entry {shown(entry)}: a name must come "
                                   "before '='")
        check_text(entry, "Env entry")
    for key in ("Cmd", "Entrypoint"):
        for arg in config[key] or []:
            check_text(arg, f"{key} argument")
    check_hostname(config["Hostname"])
    for key in ("Domainname", "User", "VolumesFrom"):
        check_text(config[key], key)
    config["WorkingDir"] = clean_path(config["WorkingDir"], "WorkingDir")
    volumes = {}
    for path, value in (config["Volumes"] or {}).items():
        path = clean_path(path, "volume path")
        if not path.startswith("/") or path == "/":
            raise InvalidParameter(f"Bad parameter: invalid volume path {shown(path)}: an absolute path other "
                                   "than / is needed")
        volumes[path] = value
    if config["Volumes"] is not None:
        config["Volumes"] = volumes


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
    check_host_path(source, "bind source")  # after Docker's own refusals, which keep their messages
    return source, clean_path(dest, "bind destination"), mode.lower() != "rw"


def parse_link(spec: str) -> tuple[str, str]:
    parts = spec.split(":")
    if len(parts) != 2 or not all(parts):
        raise InvalidParameter(f"Invalid link specification: {shown(spec)}")
    check_text(parts[0], "link target")
    check_link_alias(parts[1])
    return parts[0], parts[1]


def validate_host(host: dict[str, Any], what: str) -> None:
    """What a create or start host config must satisfy before anything is made."""
    validate_host_config(host)
    if host["Memory"] and host["Memory"] < MIN_MEMORY:
        raise InvalidParameter(f"Memory limit must be given in bytes (minimum {MIN_MEMORY} bytes)")
    if host["MemorySwap"] < -1:
        raise InvalidParameter("Bad parameter: MemorySwap must be -1, 0 or a number of bytes")
    if host["CpuShares"] < 0:
        raise InvalidParameter("Bad parameter: CpuShares cannot be negative")


def resources(config: dict[str, Any], host: dict[str, Any]) -> tuple[int, int, int]:
    """``(memory, memory_swap, cpu_shares)`` in force: the host config's (today's clients)
    over the config's (1.6 clients)."""
    return (host["Memory"] or config["Memory"], host["MemorySwap"] or config["MemorySwap"],
            host["CpuShares"] or config["CpuShares"])


def effective_host_config(config: dict[str, Any], host: dict[str, Any]) -> dict[str, Any]:
    """The host config in force, as ``GET /containers/{id}/json`` shows it: the saved one with
    the 1.6 config's limits, DNS and ``VolumesFrom`` folded in, and the defaults spelled out."""
    out = copy.deepcopy(host)
    out["Memory"], out["MemorySwap"], out["CpuShares"] = resources(config, host)
    out["Privileged"] = bool(host["Privileged"] or config["Privileged"])
    out["Dns"] = host["Dns"] or config["Dns"]
    out["VolumesFrom"] = [v for v in (config["VolumesFrom"] or "").split(",") if v] or None
    out["NetworkMode"] = host["NetworkMode"] or ("none" if config["NetworkDisabled"] else "default")
    out["RestartPolicy"] = host["RestartPolicy"] or {"Name": "no", "MaximumRetryCount": 0}
    return out
