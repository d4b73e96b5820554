"""Container configs as the v1.6 API carries them: normalising, merging with the image config,
host configs, port specs and the environment (reference §2.3, §3.1).

The fields are declared once, in ``moorage.core.services.container_model``; here are the rules
beyond their types. Keys are Go field names; Go's decoder matched them case-insensitively and
ignored unknown ones, so ``normalize_config`` does the same.
"""

from __future__ import annotations

import copy
import logging
import posixpath
from typing import Any

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.network import PortBinding
from moorage.core.sdk.security import capability_name
from moorage.core.sdk.validation import check_host_path, check_hostname, check_link_alias, check_text, clean_path, shown
from moorage.core.services.container_model import LEGACY_VIEW, ContainerConfig, HostConfig, RestartPolicy

log = logging.getLogger(__name__)

MIN_MEMORY = 524288
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: The zero ``Config`` and ``HostConfig`` as JSON objects, in Go's field order (for the image
#: records, which keep configs as the JSON they were given; a copy before changing one).
CONFIG_FIELDS: dict[str, Any] = ContainerConfig().to_api()
HOST_CONFIG_FIELDS: dict[str, Any] = HostConfig().to_api()

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
    *ContainerConfig.go_names(), "ArgsEscaped", "Cpuset", "Healthcheck", "Labels", "MacAddress", "OnBuild",
    "Shell", "StopSignal", "StopTimeout"))
DOCKER_HOST_CONFIG_KEYS = frozenset(k.lower() for k in (
    *HostConfig.go_names(), "Annotations", "BlkioDeviceReadBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteBps",
    "BlkioDeviceWriteIOps", "BlkioWeight", "BlkioWeightDevice", "Capabilities", "Cgroup", "CgroupParent",
    "CgroupnsMode", "CpuCount", "CpuPercent", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
    "CpusetCpus", "CpusetMems", "DeviceCgroupRules", "DeviceRequests", "Devices", "DiskQuota", "DnsOptions",
    "GroupAdd", "IOMaximumBandwidth", "IOMaximumIOps", "Init", "IpcMode", "Isolation", "KernelMemory",
    "KernelMemoryTCP", "LogConfig", "MaskedPaths", "MemoryReservation", "MemorySwappiness", "Mounts", "NanoCpus",
    "OomKillDisable", "OomScoreAdj", "PidMode", "PidsLimit", "ReadonlyPaths", "Runtime", "SecurityOpt", "ShmSize",
    "StorageOpt", "Sysctls", "Tmpfs", "UTSMode", "Ulimits", "UsernsMode", "VolumeDriver"))

NETWORK_MODES = ("", "default", "bridge", "host", "none")
RESTART_POLICIES = ("", "no", "always", "on-failure", "unless-stopped")


def normalize_config(data: Any) -> ContainerConfig:
    """A Config from a request body: known keys matched case-insensitively, types checked."""
    values = ContainerConfig.fold(data, "container config")
    ContainerConfig.check_types(values)
    _check_modern_config(values)
    return ContainerConfig.from_values(values)


_HEALTH_DURATIONS = ("Interval", "Timeout", "StartPeriod", "StartInterval")


def _check_modern_config(values: dict[str, Any]) -> None:
    """The types of today's ``Config`` fields beyond ``check_types``: ``Labels`` a map of
    strings, ``StopTimeout`` an integer or null, ``Healthcheck`` Docker's object (durations in
    nanoseconds, none negative, as Docker's create checks them)."""
    labels = values.get("labels")
    if labels and not all(isinstance(v, str) for v in labels.values()):
        raise InvalidParameter("Bad parameter: Labels must be an object of strings")
    timeout = values.get("stop_timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
        raise InvalidParameter("Bad parameter: StopTimeout must be an integer")
    health = values.get("healthcheck")
    if not health:
        return
    test = health.get("Test")
    if test is not None and not (isinstance(test, list) and all(isinstance(t, str) for t in test)):
        raise InvalidParameter("Bad parameter: Healthcheck.Test must be a list of strings")
    for key in (*_HEALTH_DURATIONS, "Retries"):
        value = health.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidParameter(f"Bad parameter: Healthcheck.{key} must be an integer")
        if value < 0:
            what = "Retries" if key == "Retries" else key
            raise InvalidParameter(f"{what} in Healthcheck cannot be negative")


def check_legacy_config(body: Any) -> None:
    """400 naming the given ``Config`` fields the v1.0–v1.6 API does not have (``Labels``,
    ``StopSignal``...): a 1.6 request cannot show them, so it may not set them either."""
    legacy = ContainerConfig.fields_for(LEGACY_VIEW)
    values = ContainerConfig.fold(body, "container config")
    given = sorted(ContainerConfig.model_fields[n].alias for n, v in values.items()
                   if n not in legacy and not _is_unset(v))
    if given:
        raise InvalidParameter(f"create: moorage does not support the Config field(s) {', '.join(given)} "
                               "that were given at API 1.6; they are served from API 1.24 on")


def normalize_host_config(data: Any) -> HostConfig:
    values = HostConfig.fold(data, "host config")
    volumes_from = values.get("volumes_from")
    if isinstance(volumes_from, str):  # the 1.6 Config's comma-separated form
        values["volumes_from"] = [v for v in volumes_from.split(",") if v.strip()] or None
    HostConfig.check_types(values)
    host = HostConfig.from_values(values)
    lxc = values.get("lxc_conf")
    if lxc is not None and not (isinstance(lxc, list) and all(isinstance(e, dict) and "Key" in e for e in lxc)):
        # the v1.6 docs showed a map, which Docker could not decode either
        raise InvalidParameter('Bad parameter: LxcConf must be a list of {"Key": ..., "Value": ...}')
    for key, names in (("CapAdd", host.cap_add), ("CapDrop", host.cap_drop)):
        for name in names or []:
            try:
                capability_name(name)
            except InvalidParameter as exc:
                raise InvalidParameter(f"Bad parameter: {key}: {exc}") from None
    _check_network_mode(host.network_mode)
    for entry in host.extra_hosts or []:
        parse_extra_host(entry)
    size = values.get("console_size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= 65535 for n in size)):
        raise InvalidParameter("Bad parameter: ConsoleSize must be [height, width], each 0 to 65535")
    policy = values.get("restart_policy")
    if policy is not None:
        name, retries = restart_policy(policy)
        host.restart_policy = RestartPolicy(name=name, maximum_retry_count=retries)
    return host


def _check_network_mode(mode: str) -> None:
    if mode.startswith("container:"):
        raise InvalidParameter(f"NetworkMode {mode!r} is not supported: moorage's network drivers cannot "
                               "join another container's network namespace")
    if mode not in NETWORK_MODES:
        raise InvalidParameter(f"NetworkMode {mode!r} is not supported: use bridge, default, host or none")


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
    return _given_but_unsupported(data, HostConfig.go_names(), DOCKER_HOST_CONFIG_KEYS, "HostConfig")


def _is_unset(value: Any) -> bool:
    """Go's zero values, also nested (``{"Type": "", "Config": {}}``, ``[0, 0]``)."""
    if value is None or value is False or value == 0 or value == "":
        return True
    if isinstance(value, list):
        return all(_is_unset(v) for v in value)
    if isinstance(value, dict):
        return all(_is_unset(v) for v in value.values())
    return False


def create_host_config(body: Any, config: ContainerConfig) -> HostConfig:
    """The ``HostConfig`` today's clients send inside the create body (1.6 clients send it
    to start instead): checked now, so a bad or unsupported option fails ``docker run``
    before anything exists. Bind destinations become volumes and ``VolumesFrom`` moves
    into the config, where start looks for them (as the 0.6 CLI put them there)."""
    check_supported_config(body)
    raw = None
    if isinstance(body, dict):
        raw = next((v for k, v in body.items() if str(k).lower() == "hostconfig"), None)
    check_supported(raw, "create")
    host = normalize_host_config(raw)
    validate_host(host)
    for spec in host.binds or []:
        dest = parse_bind(spec)[1]
        config.volumes = {**(config.volumes or {}), dest: {}}
    if host.volumes_from:
        config.volumes_from = ",".join(filter(None, [config.volumes_from, *host.volumes_from]))
    return host


def console_size(config: ContainerConfig, host: HostConfig) -> tuple[int, int] | None:
    """The tty size a container starts with (``HostConfig.ConsoleSize``, which today's CLI sends
    from a terminal), or None: no tty, or no size given."""
    size = host.console_size
    if not config.tty or not size or not all(size):
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
    given = _given_but_unsupported(data, (*ContainerConfig.go_names(), "HostConfig", "NetworkingConfig"),
                                   DOCKER_CONFIG_KEYS, "create")
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


def merge_with_image(config: ContainerConfig, image_config: dict[str, Any] | None) -> list[str]:
    """Merge the image's config into a create config in place (reference §2.3 step 2).
    Returns the warnings to answer with."""
    warnings: list[str] = []
    image = normalize_config(image_config) if image_config else None
    deprecated = any(":" in s for s in (config.port_specs or []))
    specs: list[str] = []
    if image is not None:
        config.user = config.user or image.user
        config.memory = config.memory or image.memory
        config.memory_swap = config.memory_swap or image.memory_swap
        config.cpu_shares = config.cpu_shares or image.cpu_shares
        config.working_dir = config.working_dir or image.working_dir
        config.volumes_from = config.volumes_from or image.volumes_from
        config.tty = bool(config.tty or image.tty)
        config.open_stdin = bool(config.open_stdin or image.open_stdin)
        config.stdin_once = bool(config.stdin_once or image.stdin_once)
        config.cmd = config.cmd or image.cmd
        config.entrypoint = config.entrypoint or image.entrypoint
        if image.labels:
            config.labels = {**image.labels, **(config.labels or {})}
        config.stop_signal = config.stop_signal or image.stop_signal
        if image.healthcheck:
            config.healthcheck = {**image.healthcheck, **(config.healthcheck or {})}
        if not config.exposed_ports:
            config.exposed_ports = copy.deepcopy(image.exposed_ports)
        keys = {e.split("=", 1)[0] for e in config.env or []}
        extra = [e for e in image.env or [] if e.split("=", 1)[0] not in keys]
        if extra:
            config.env = (config.env or []) + extra
        if image.dns:
            config.dns = (config.dns or []) + image.dns
        if image.volumes:
            config.volumes = {**image.volumes, **(config.volumes or {})}
        deprecated = deprecated or any(":" in s for s in (image.port_specs or []))
        specs = image.port_specs or []
    # PortSpecs become ExposedPorts (host parts dropped) and are then cleared
    exposed = dict(config.exposed_ports or {})
    for spec in (config.port_specs or []) + specs:
        exposed[parse_port_spec(spec)[0]] = {}
    for key in list(exposed):
        normal = port_key(key)
        if normal != key:
            exposed[normal] = exposed.pop(key)
    config.exposed_ports = exposed or None
    config.port_specs = None
    if deprecated:
        warnings.append("The mapping to public ports on your host has been deprecated. Use -p to publish the ports.")
    return warnings


def _check_limits(memory: int, memory_swap: int, cpu_shares: int) -> None:
    """The limits a 1.6 ``Config`` or a ``HostConfig`` may carry."""
    if memory and memory < MIN_MEMORY:
        raise InvalidParameter(f"Memory limit must be given in bytes (minimum {MIN_MEMORY} bytes)")
    if memory_swap < -1:
        raise InvalidParameter("Bad parameter: MemorySwap must be -1, 0 or a number of bytes")
    if cpu_shares < 0:
        raise InvalidParameter("Bad parameter: CpuShares cannot be negative")


def validate(config: ContainerConfig) -> None:
    _check_limits(config.memory, config.memory_swap, config.cpu_shares)
    for entry in config.env or []:
        if not entry or entry.startswith("="):
            raise InvalidParameter(f"Bad parameter: invalid environment entry {shown(entry)}: a name must come "
                                   "before '='")
        check_text(entry, "Env entry")
    for key, argv in (("Cmd", config.cmd), ("Entrypoint", config.entrypoint)):
        for arg in argv or []:
            check_text(arg, f"{key} argument")
    check_hostname(config.hostname)
    for key, text in (("Domainname", config.domainname), ("User", config.user), ("VolumesFrom", config.volumes_from)):
        check_text(text, key)
    config.working_dir = clean_path(config.working_dir, "WorkingDir")
    volumes = {}
    for path, value in (config.volumes or {}).items():
        path = clean_path(path, "volume path")
        if not path.startswith("/") or path == "/":
            raise InvalidParameter(f"Bad parameter: invalid volume path {shown(path)}: an absolute path other "
                                   "than / is needed")
        volumes[path] = value
    if config.volumes is not None:
        config.volumes = volumes


def validate_host_config(host: HostConfig) -> None:
    """What a start's host config names: bind paths (``parse_bind``) and link specs, checked
    before anything of it is recorded."""
    for spec in host.binds or []:
        parse_bind(spec)
    for spec in host.links or []:
        parse_link(spec)


def command(config: ContainerConfig) -> tuple[str, list[str]]:
    """``(Path, Args)`` from Entrypoint and Cmd (reference §2.3 step 3)."""
    entrypoint, cmd = config.entrypoint or [], config.cmd
    if entrypoint and cmd is None:
        config.cmd = cmd = []
    if not entrypoint and not cmd:
        raise InvalidParameter("No command specified")
    argv = list(entrypoint) + list(cmd or [])
    return argv[0], argv[1:]


def environment(config: ContainerConfig, link_env: list[str] = ()) -> list[str]:
    """The process environment in Docker's order; later entries win (reference §3.1)."""
    env = ["HOME=/", f"PATH={DEFAULT_PATH}", "container=moorage", f"HOSTNAME={config.hostname}"]
    if config.tty:
        env.append("TERM=xterm")
    env += list(link_env)
    env += list(config.env or [])
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


def validate_host(host: HostConfig) -> None:
    """What a create or start host config must satisfy before anything is made."""
    validate_host_config(host)
    _check_limits(host.memory, host.memory_swap, host.cpu_shares)


def resources(config: ContainerConfig, host: HostConfig) -> tuple[int, int, int]:
    """``(memory, memory_swap, cpu_shares)`` in force: the host config's (today's clients)
    over the config's (1.6 clients)."""
    return (host.memory or config.memory, host.memory_swap or config.memory_swap,
            host.cpu_shares or config.cpu_shares)


def effective_host_config(config: ContainerConfig, host: HostConfig) -> HostConfig:
    """The host config in force, as ``GET /containers/{id}/json`` shows it: the saved one with
    the 1.6 config's limits, DNS and ``VolumesFrom`` folded in, and the defaults spelled out."""
    out = host.copy_deep()
    out.memory, out.memory_swap, out.cpu_shares = resources(config, host)
    out.privileged = bool(host.privileged or config.privileged)
    out.dns = host.dns or config.dns
    out.volumes_from = [v for v in (config.volumes_from or "").split(",") if v] or None
    out.network_mode = host.network_mode or ("none" if config.network_disabled else "default")
    out.restart_policy = host.restart_policy or RestartPolicy()
    return out


def requested_ports(config: ContainerConfig, host: HostConfig) -> dict[str, list[PortBinding]]:
    """Every exposed port, with the bindings asked for; PublishAllPorts gives unbound ones a
    random port (reference §3.1)."""
    ports: dict[str, list[PortBinding]] = {}
    bindings = host.port_bindings or {}
    for key in config.exposed_ports or {}:
        made = []
        for b in bindings.get(key) or []:
            host_port = str((b or {}).get("HostPort") or "0")
            if not host_port.isdigit() or int(host_port) > 65535:
                raise InvalidParameter(f"Bad parameter: invalid host port {host_port!r} for {key}")
            made.append(PortBinding(host_ip=(b or {}).get("HostIp") or "", host_port=int(host_port)))
        if not made and host.publish_all_ports:
            made = [PortBinding()]
        ports[key] = made
    return ports
