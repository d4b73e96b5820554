"""What holds a container in: its capabilities, the paths of /proc and /sys it may not see or
change, and its seccomp filter. Core decides (``SecurityPolicy``, from the config file's
``[security]`` table, and the container's ``CapAdd``/``CapDrop``); every exec driver enforces
the resulting ``Confinement``, which ``ProcessSpec.confinement`` carries. A privileged
container is not confined at all: drivers ignore ``confinement`` when ``spec.privileged``.

The seccomp profile is data in Docker's JSON profile format (``seccomp_default.json`` beside
this module is moorage's copy of Docker's default). ``SeccompProfile.resolve`` evaluates its
``includes``/``excludes`` (capabilities, architectures, kernel version) for one container and
gives the ``SeccompFilter`` a driver loads: plain rules, nothing left to decide.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from moorage.core.sdk.errors import ConfigError, InvalidParameter

#: Every capability the kernel knows, by name (without ``CAP_``) -> number.
CAPABILITIES: dict[str, int] = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
    "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9, "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12,
    "NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
    "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24,
    "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
    "SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36,
    "AUDIT_READ": 37, "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}

#: Docker's default allow-list (its ``CapBnd`` is ``00000000a80425fb``).
DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
                        "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")

#: What Docker (28.x) hides: a file gets /dev/null bound over it, a directory an empty
#: read-only tmpfs; a path this kernel lacks is skipped.
DEFAULT_MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                        "/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list",
                        "/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware")

#: What Docker makes read-only (``/sys`` is mounted read-only as a whole). As in Docker, all of
#: ``/proc/sys`` is, ``/proc/sys/net`` too: Docker lets only its ``--sysctl net.*`` (which API 1.6
#: lacks) change a container's own network namespace, and never the host's.
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

DEFAULT_PROFILE_PATH = Path(__file__).with_name("seccomp_default.json")
#: ``seccomp_profile`` values that are not paths
BUILTIN_PROFILE, UNCONFINED = "default", "unconfined"
#: A profile file larger than this is refused before it is read.
MAX_PROFILE_BYTES = 1 << 20

ACTIONS = ("SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO",
           "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG")
OPERATORS = ("SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
             "SCMP_CMP_MASKED_EQ")
#: Go's GOARCH names (the profile's ``arches``) of libseccomp's architectures
GO_ARCHES = {"SCMP_ARCH_X86": "386", "SCMP_ARCH_X86_64": "amd64", "SCMP_ARCH_X32": "x32",
             "SCMP_ARCH_ARM": "arm", "SCMP_ARCH_AARCH64": "arm64", "SCMP_ARCH_MIPS": "mips",
             "SCMP_ARCH_MIPS64": "mips64", "SCMP_ARCH_MIPS64N32": "mips64n32", "SCMP_ARCH_MIPSEL": "mipsle",
             "SCMP_ARCH_MIPSEL64": "mips64le", "SCMP_ARCH_MIPSEL64N32": "mips64len32", "SCMP_ARCH_PPC": "ppc",
             "SCMP_ARCH_PPC64": "ppc64", "SCMP_ARCH_PPC64LE": "ppc64le", "SCMP_ARCH_S390": "s390",
             "SCMP_ARCH_S390X": "s390x", "SCMP_ARCH_RISCV64": "riscv64"}
#: uname's machine -> libseccomp's native architecture
NATIVE_ARCHES = {"x86_64": "SCMP_ARCH_X86_64", "aarch64": "SCMP_ARCH_AARCH64", "s390x": "SCMP_ARCH_S390X",
                 "ppc64le": "SCMP_ARCH_PPC64LE", "riscv64": "SCMP_ARCH_RISCV64", "i686": "SCMP_ARCH_X86",
                 "armv7l": "SCMP_ARCH_ARM", "mips64": "SCMP_ARCH_MIPS64"}


def capability_name(raw: str) -> str:
    """``cap_net_admin``, ``NET_ADMIN`` or ``all`` -> ``NET_ADMIN`` / ``ALL``; ``InvalidParameter``
    for a name the kernel does not know."""
    name = str(raw).strip().upper()
    if name.startswith("CAP_"):
        name = name[4:]
    if name != "ALL" and name not in CAPABILITIES:
        raise InvalidParameter(f"unknown capability: {raw!r}")
    return name


def capability_mask(names: Iterable[str]) -> int:
    """The bit mask of capability ``names`` (as in /proc/PID/status)."""
    mask = 0
    for name in names:
        mask |= 1 << CAPABILITIES[name]
    return mask


def tweak_capabilities(base: Iterable[str], add: Iterable[str] = (), drop: Iterable[str] = ()) -> frozenset[str]:
    """``base`` changed by ``CapAdd``/``CapDrop`` as Docker does: ``ALL`` in ``add`` gives every
    capability but those dropped; ``ALL`` in ``drop`` keeps only those added; otherwise the
    dropped ones go and the added ones come (an added one wins over the same one dropped)."""
    added = {capability_name(c) for c in add}
    dropped = {capability_name(c) for c in drop}
    if "ALL" in added:
        return frozenset(CAPABILITIES) - dropped
    if "ALL" in dropped:
        return frozenset(added)
    return frozenset((set(base) - dropped) | added)


# -- seccomp ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class SeccompArg:
    """A condition on argument ``index``: ``arg OP value`` (``MASKED_EQ``: ``arg & value == value_two``)."""

    index: int
    value: int
    op: str
    value_two: int = 0


@dataclass(frozen=True)
class SeccompRule:
    """``action`` for the system calls ``names`` (those this libseccomp does not know are skipped)
    when every one of ``args`` holds."""

    names: tuple[str, ...]
    action: str
    errno: int = 1  # with SCMP_ACT_ERRNO
    args: tuple[SeccompArg, ...] = ()


@dataclass(frozen=True)
class SeccompFilter:
    """A profile resolved for one container: what a driver loads, with nothing left to decide."""

    default_action: str
    default_errno: int
    architectures: tuple[str, ...]  # libseccomp names (SCMP_ARCH_*), the native one first
    rules: tuple[SeccompRule, ...]

    def __hash__(self) -> int:
        # A driver keys its compiled programs by filter at every start: hashing hundreds of
        # rules took 0.06 ms each time, so it is done once per filter.
        cached = self.__dict__.get("_hash")
        if cached is None:
            cached = hash((self.default_action, self.default_errno, self.architectures, self.rules))
            object.__setattr__(self, "_hash", cached)
        return cached

    def to_json(self) -> dict:
        """A plain-JSON form for a driver's start request (``from_json`` reads it back)."""
        return {"default_action": self.default_action, "default_errno": self.default_errno,
                "architectures": list(self.architectures),
                "rules": [[list(r.names), r.action, r.errno, [[a.index, a.value, a.op, a.value_two] for a in r.args]]
                          for r in self.rules]}

    @classmethod
    def from_json(cls, data: dict) -> SeccompFilter:
        return cls(data["default_action"], data["default_errno"], tuple(data["architectures"]),
                   tuple(SeccompRule(tuple(names), action, errno, tuple(SeccompArg(*a) for a in args))
                         for names, action, errno, args in data["rules"]))


def kernel_version(release: str | None = None) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", release or platform.release())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


class SeccompProfile:
    """A seccomp profile in Docker's JSON format, checked when it is read (``ConfigError`` with
    the file and what is wrong)."""

    #: resolved filters kept per profile (one per distinct set of capabilities)
    MAX_RESOLVED = 32

    def __init__(self, data: dict, source: str) -> None:
        self.source = source
        self.data = data
        self._check()
        self._resolved: dict[tuple, SeccompFilter] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path) -> SeccompProfile:
        path = Path(path)
        try:
            with open(path, "rb") as f:
                raw = f.read(MAX_PROFILE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"seccomp profile {path}: {exc.strerror}") from None
        if len(raw) > MAX_PROFILE_BYTES:
            raise ConfigError(f"seccomp profile {path}: larger than {MAX_PROFILE_BYTES} bytes")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"seccomp profile {path}: not JSON: {exc}") from None
        return cls(data, str(path))

    def _fail(self, what: str) -> None:
        raise ConfigError(f"seccomp profile {self.source}: {what}")

    def _check(self) -> None:
        d = self.data
        if not isinstance(d, dict):
            self._fail("must be a JSON object")
        if d.get("defaultAction") not in ACTIONS:
            self._fail(f"defaultAction must be one of {', '.join(ACTIONS)}")
        for entry in d.get("archMap") or []:
            if not isinstance(entry, dict) or entry.get("architecture") not in GO_ARCHES:
                self._fail(f"unknown architecture in archMap: {entry!r}")
        for arch in d.get("architectures") or []:
            if arch not in GO_ARCHES:
                self._fail(f"unknown architecture {arch!r}")
        rules = d.get("syscalls")
        if not isinstance(rules, list):
            self._fail("syscalls must be a list")
        for rule in rules:
            if not isinstance(rule, dict):
                self._fail("each syscalls entry must be an object")
            names = rule.get("names") or ([rule["name"]] if rule.get("name") else None)
            if not names or not all(isinstance(n, str) and re.fullmatch(r"[a-z0-9_]+", n) for n in names):
                self._fail(f"a syscalls entry needs names of system calls: {rule!r}")
            if rule.get("action") not in ACTIONS:
                self._fail(f"unknown action {rule.get('action')!r} for {names[0]}")
            for arg in rule.get("args") or []:
                if (not isinstance(arg, dict) or arg.get("op") not in OPERATORS
                        or not isinstance(arg.get("index"), int) or not 0 <= arg["index"] <= 5
                        or not isinstance(arg.get("value", 0), int) or not isinstance(arg.get("valueTwo", 0), int)):
                    self._fail(f"bad argument condition for {names[0]}: {arg!r}")
            for key in ("includes", "excludes"):
                for cap in (rule.get(key) or {}).get("caps") or []:
                    try:
                        capability_name(cap)
                    except InvalidParameter:
                        self._fail(f"unknown capability {cap!r} in {key} of {names[0]}")

    def resolve(self, capabilities: Iterable[str], machine: str | None = None,
                kernel: tuple[int, int] | None = None) -> SeccompFilter:
        """The filter for a container holding ``capabilities``, on this machine and kernel (kept:
        every start of a container asks again)."""
        key = (frozenset(capabilities), machine, kernel)
        with self._lock:
            found = self._resolved.get(key)
        if found is None:
            found = self._resolve(*key)
            with self._lock:
                self._resolved[key] = found
                while len(self._resolved) > self.MAX_RESOLVED:
                    self._resolved.pop(next(iter(self._resolved)))
        return found

    def _resolve(self, capabilities: frozenset[str], machine: str | None, kernel: tuple[int, int] | None
                 ) -> SeccompFilter:
        caps = {f"CAP_{c}" for c in capabilities}
        native = NATIVE_ARCHES.get(machine or platform.machine())
        if native is None:
            raise ConfigError(f"seccomp: no libseccomp architecture known for {machine or platform.machine()}")
        kernel = kernel or kernel_version()
        arches = [native]
        for entry in self.data.get("archMap") or []:
            if entry["architecture"] == native:
                arches += [a for a in entry.get("subArchitectures") or [] if a not in arches]
        go_arch = GO_ARCHES[native]  # as Docker: ``arches`` conditions name the native one

        def holds(conditions: dict | None, default: bool) -> bool:
            if not conditions:
                return default
            tests = []
            if conditions.get("caps"):
                tests.append(any(f"CAP_{capability_name(c)}" in caps for c in conditions["caps"]) if not default
                             else all(f"CAP_{capability_name(c)}" in caps for c in conditions["caps"]))
            if conditions.get("arches"):
                tests.append(go_arch in conditions["arches"])
            if conditions.get("minKernel"):
                tests.append(kernel >= kernel_version(conditions["minKernel"]))
            return any(tests) if not default else all(tests)

        default_errno = int(self.data.get("defaultErrnoRet") or 1)
        rules = []
        for rule in self.data["syscalls"]:
            # includes: every condition must hold; excludes: any condition that holds rules it out
            if not holds(rule.get("includes"), True) or holds(rule.get("excludes"), False):
                continue
            action = rule["action"]
            errno = int(rule.get("errnoRet") or 1)
            if action == self.data["defaultAction"] and errno == default_errno and not rule.get("args"):
                continue  # what the default does anyway (libseccomp refuses such a rule)
            names = tuple(rule.get("names") or [rule["name"]])
            args = tuple(SeccompArg(a["index"], a.get("value", 0), a["op"], a.get("valueTwo", 0))
                         for a in rule.get("args") or [])
            rules.append(SeccompRule(names, action, errno, args))
        return SeccompFilter(self.data["defaultAction"], default_errno, tuple(arches), tuple(rules))


@functools.cache
def default_profile() -> SeccompProfile:
    """moorage's copy of Docker's default profile (read once)."""
    return SeccompProfile.load(DEFAULT_PROFILE_PATH)


# -- what a container gets -------------------------------------------------------------------

@dataclass(frozen=True)
class Confinement:
    """What one non-privileged container is held to; every field has Docker's default.

    ``seccomp`` None: no syscall filter (``seccomp_profile = "unconfined"``)."""

    capabilities: frozenset[str] = frozenset(DEFAULT_CAPABILITIES)
    seccomp: SeccompProfile | None = field(default_factory=default_profile)
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS

    def with_capabilities(self, add: Iterable[str] = (), drop: Iterable[str] = ()) -> Confinement:
        """This confinement with a container's ``CapAdd``/``CapDrop`` applied."""
        return replace(self, capabilities=tweak_capabilities(self.capabilities, add, drop))

    def capability_numbers(self) -> list[int]:
        return sorted(CAPABILITIES[c] for c in self.capabilities)

    def seccomp_filter(self) -> SeccompFilter | None:
        """The profile resolved for these capabilities on this host (None: no filter)."""
        return self.seccomp.resolve(self.capabilities) if self.seccomp is not None else None


class SecurityPolicy:
    """The daemon-wide default confinement, from the ``[security]`` table (see docs/config.md):
    ``capabilities`` (names, with or without ``CAP_``), ``seccomp_profile`` (``"default"``,
    ``"unconfined"`` or the path of a profile in Docker's JSON format), ``masked_paths`` and
    ``readonly_paths``. Errors are ``ConfigError``s naming the key or the file."""

    def __init__(self, capabilities: Iterable[str] = DEFAULT_CAPABILITIES, seccomp_profile: str = BUILTIN_PROFILE,
                 masked_paths: Iterable[str] = DEFAULT_MASKED_PATHS,
                 readonly_paths: Iterable[str] = DEFAULT_READONLY_PATHS) -> None:
        try:
            caps = frozenset(capability_name(c) for c in capabilities)
        except InvalidParameter as exc:
            raise ConfigError(f"[security] capabilities: {exc}") from None
        if "ALL" in caps:
            caps = frozenset(CAPABILITIES)
        for key, paths in (("masked_paths", masked_paths), ("readonly_paths", readonly_paths)):
            for path in paths:
                if not (path.startswith("/proc/") or path.startswith("/sys/")) or ".." in path.split("/"):
                    raise ConfigError(f"[security] {key}: {path!r} is not a path below /proc or /sys")
        if seccomp_profile == UNCONFINED:
            profile = None
        elif seccomp_profile in (BUILTIN_PROFILE, ""):
            profile = default_profile()
        else:
            profile = SeccompProfile.load(os.path.expanduser(seccomp_profile))
        self.default = Confinement(caps, profile, tuple(masked_paths), tuple(readonly_paths))
        if profile is not None:
            profile.resolve(caps)  # a profile this host cannot use fails now, not at a start

    def for_container(self, cap_add: Iterable[str] | None, cap_drop: Iterable[str] | None) -> Confinement:
        """The confinement of a container started with these ``CapAdd``/``CapDrop``."""
        if not cap_add and not cap_drop:
            return self.default
        return self.default.with_capabilities(cap_add or (), cap_drop or ())
