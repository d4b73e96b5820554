"""The LXC config file generated for one container from its ``ProcessSpec``.

What LXC itself does: namespaces, the rootfs (``dir:`` on the graph driver's mount), a minimal
``/dev`` (autodev), ``/proc`` and a read-only ``/sys``, bind mounts, the hostname, cgroup limits,
the device whitelist, capability drops, the user, groups and working directory of the init
process. What it cannot do the way the exec contract wants, the driver adds around it:

- pid 1 is the user's command with exactly the given environment, and a command that cannot be
  executed exits 127/126 with a message: LXC clears the environment and puts ``container=lxc``
  first, and reports a failed exec as a start failure. So init is the host's static busybox
  bind-mounted (read-only, in the container's ``/dev`` tmpfs, so nothing is written to the
  rootfs) as ``/dev/.moorage/env`` and run as ``env -i -- K=V... command...``: it execs the
  command in place, as Docker 0.6's ``/.dockerinit`` did.
- the network namespace is handed over before the command runs: the ``start-host`` hook (run by
  LXC on the host after setup, before init is executed) reports the init's host pid on a fifo
  and waits for the monitor's answer on a second fifo (see ``monitor``).
- a read-only root (``readonly_rootfs``) is remounted read-only by a ``mount`` hook, after
  every mount entry: ``lxc.rootfs.options = ro`` would leave the entries no way to create their
  mount points.
"""

from __future__ import annotations

import os
import posixpath
import re
import shlex
import shutil
from pathlib import Path

from moorage.core.sdk.archive import resolve_in_root
from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.exec import ProcessSpec
from moorage.core.sdk.security import SeccompArg, SeccompFilter
from moorage.drivers.exec.common.policy import DEVICE_WHITELIST, cpu_weight, host_devices, memory_limits
from moorage.drivers.exec.lxc.files import CONFIG, GO_FIFO, HOOK, LOG, START_FIFO

__all__ = ["CONFIG", "HOOK", "SECCOMP", "init_argv", "hook_script", "render", "seccomp_profile"]

INIT = "/dev/.moorage/env"
#: the container's seccomp profile in LXC's format (``seccomp_profile``), beside the config
SECCOMP = "seccomp.conf"

HOOK_SCRIPT = """\
# Run by LXC on the host once the container is set up, before its init is executed.
dir={exec_dir}
printf '%s\\n' "$LXC_PID" > "$dir/{start}"
read answer < "$dir/{go}"
test "$answer" = go
"""


def _fstab(path: str) -> str:
    """A path as an fstab field (LXC parses mount entries with getmntent)."""
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011")


def _line(key: str, value: object) -> str:
    text = str(value)
    if "\n" in text or "\n" in key:
        raise InvalidParameter(f"the LXC config value of {key} must not contain a newline")
    return f"{key} = {text}"


def init_argv(spec: ProcessSpec) -> list[str]:
    """The init process's argv: busybox ``env`` replacing itself with the command."""
    env = [item if "=" in item else f"{item}=" for item in spec.env]
    return [INIT, "-i", "--", *env, *spec.args]


def hook_script(exec_dir: Path) -> str:
    return HOOK_SCRIPT.format(exec_dir=shlex.quote(str(exec_dir)), start=START_FIFO, go=GO_FIFO)


def render(spec: ProcessSpec, exec_dir: Path, busybox: Path, uid: int, gid: int, groups: tuple[int, ...],
           v2: bool) -> str:
    """The config file's text (``v2``: the host's cgroups are the unified hierarchy);
    ``spec.driver_options`` come last so that they can override."""
    lines = [
        _line("lxc.uts.name", spec.hostname or spec.container_id[:12]),
        _line("lxc.rootfs.path", f"dir:{Path(spec.rootfs).resolve()}"),
        _line("lxc.net.0.type", "empty" if spec.isolate_network else "none"),
        _line("lxc.console.path", "none"),
        _line("lxc.tty.max", 0),
        _line("lxc.pty.max", 1024),
        _line("lxc.autodev", 1),
        _line("lxc.mount.auto", "proc:rw sys:rw" if spec.privileged else "proc:mixed sys:ro"),
        _line("lxc.mount.entry", "shm dev/shm tmpfs nosuid,nodev,noexec,mode=1777,size=65536k,create=dir 0 0"),
        _line("lxc.mount.entry", f"{_fstab(str(busybox))} {INIT.lstrip('/')} none bind,ro,create=file 0 0"),
        _line("lxc.log.file", exec_dir / LOG),
        _line("lxc.log.level", "ERROR"),
        _line("lxc.hook.start-host", f"/bin/sh {shlex.quote(str(exec_dir / HOOK))}"),
        _line("lxc.init.uid", uid),
        _line("lxc.init.gid", gid),
        _line("lxc.init.cwd", spec.working_dir or "/"),
    ]
    if spec.readonly_rootfs:
        # Docker's --read-only. Not ``lxc.rootfs.options = ro``: LXC would make the root read-only
        # before the mount entries, which then cannot create their mount points. The mount hook
        # runs after every mount, before pivot_root: the root bind alone is remounted read-only
        # (not recursively), so the mounts below it keep their own modes.
        mount = shutil.which("mount") or "/bin/mount"
        lines.append(_line("lxc.hook.mount",
                           f"/bin/sh -c 'exec {mount} -o remount,bind,ro \"$LXC_ROOTFS_MOUNT\"'"))
    if groups:
        lines.append(_line("lxc.init.groups", ",".join(str(g) for g in groups)))
    for m in spec.mounts:
        kind = "dir" if Path(m.source).is_dir() else "file"
        options = f"rbind,create={kind}" + (",ro" if m.readonly else "")
        target = mount_target(spec.rootfs, m.destination)
        lines.append(_line("lxc.mount.entry", f"{_fstab(str(m.source))} {_fstab(target)} none {options} 0 0"))
        if m.readonly:
            lines.extend(readonly_submounts(m.source, target))
    lines.extend(confinement_lines(spec, exec_dir))
    if spec.privileged:
        lines.append(_line("lxc.apparmor.profile", "unconfined"))  # as Docker 0.6 (ignored without AppArmor)
    lines.extend(cgroup_lines(spec, v2))
    lines.extend(_line(key.strip(), value.strip()) for key, value in spec.driver_options)
    return "\n".join(lines) + "\n"


# -- confinement: the same policy as the native driver's, in LXC's terms --------------------------

#: libseccomp's actions as LXC's profile format names them
_LXC_ACTIONS = {"SCMP_ACT_KILL": "kill", "SCMP_ACT_KILL_THREAD": "kill", "SCMP_ACT_KILL_PROCESS": "kill",
                "SCMP_ACT_TRAP": "trap", "SCMP_ACT_ALLOW": "allow", "SCMP_ACT_LOG": "log"}


def _lxc_action(action: str, errno: int) -> str:
    if action == "SCMP_ACT_ERRNO":
        return f"errno {errno}"
    if action not in _LXC_ACTIONS:
        raise InvalidParameter(f"the lxc driver cannot express the seccomp action {action}")
    return _LXC_ACTIONS[action]


def _lxc_condition(arg: SeccompArg) -> str:
    """LXC writes ``[index,value,op,mask]``: with MASKED_EQ, Docker's ``value`` is the mask and
    its ``valueTwo`` the value."""
    if arg.op == "SCMP_CMP_MASKED_EQ":
        return f"[{arg.index},{arg.value_two},{arg.op},{arg.value}]"
    return f"[{arg.index},{arg.value},{arg.op}]"


def seccomp_profile(seccomp: SeccompFilter) -> str:
    """``seccomp`` (a profile resolved for one container) in LXC's version 2 format: one rule per
    line, ``name action [index,value,op,value_two]...``, under ``[all]`` (the native
    architecture and its compat ones, as the profile's architectures)."""
    lines = ["2", f"allowlist {_lxc_action(seccomp.default_action, seccomp.default_errno)}", "[all]"]
    for rule in seccomp.rules:
        action = _lxc_action(rule.action, rule.errno)
        conditions = "".join(_lxc_condition(a) for a in rule.args)
        lines.extend(f"{name} {action}{' ' + conditions if conditions else ''}" for name in rule.names)
    return "\n".join(lines) + "\n"


def confinement_lines(spec: ProcessSpec, exec_dir: Path) -> list[str]:
    """The capabilities (``lxc.cap.keep``: the allow-list), the seccomp profile (written by the
    driver as ``SECCOMP``) and the masked and read-only paths of ``spec.confinement``. A
    privileged container keeps every capability and gets no filter, but each host device.
    ``proc:mixed`` already makes ``/proc/sys`` and
    ``/proc/sysrq-trigger`` read-only (``/proc/sys/net`` too); ``sys:ro`` makes ``/sys``
    read-only."""
    if spec.privileged:  # the host's devices, bound into the /dev tmpfs of autodev
        return [_line("lxc.mount.entry", f"{_fstab('/dev/' + path)} {_fstab('dev/' + path)} none "
                      f"bind,optional,create=file 0 0") for path, *_ in host_devices()]
    c = spec.confinement
    keep = " ".join(sorted(name.lower() for name in c.capabilities)) or "none"
    lines = [_line("lxc.cap.keep", keep)]
    if c.seccomp is not None:
        lines.append(_line("lxc.seccomp.profile", exec_dir / SECCOMP))
    for path in c.masked_paths:
        host = Path(path)  # the container's /proc and /sys show this kernel's entries, as the host's do
        target = _fstab(path.lstrip("/"))
        if host.is_dir():
            lines.append(_line("lxc.mount.entry", f"tmpfs {target} tmpfs ro,nosuid,nodev,noexec,mode=555,optional 0 0"))
        elif host.exists():
            lines.append(_line("lxc.mount.entry", f"/dev/null {target} none bind,optional 0 0"))
    for path in c.readonly_paths:
        if path in ("/proc/sys", "/proc/sysrq-trigger") or not Path(path).exists():
            continue  # proc:mixed's
        # global (not per-namespace) parts of /proc: the host's entry is the container's
        lines.append(_line("lxc.mount.entry", f"{_fstab(path)} {_fstab(path.lstrip('/'))} none bind,ro,optional 0 0"))
    return lines


def mount_target(rootfs: Path, destination: str) -> str:
    """``destination`` resolved in the rootfs as a chroot would, relative to it (LXC refuses a
    symlink in a target): a dangling symlink on the way is followed inside the rootfs too
    (``/etc/hosts -> /run/x`` gives ``run/x``), never out of it."""
    root = Path(os.path.realpath(rootfs))
    path = destination
    for _ in range(40):
        try:
            relative = resolve_in_root(rootfs, path)
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
        parts = [p for p in relative.split("/") if p not in ("", ".")]
        for i in range(len(parts)):
            here = root.joinpath(*parts[:i + 1])
            if here.is_symlink():  # dangling: resolve_in_root stopped at it
                link = os.readlink(here)
                rest = "/".join(parts[i + 1:])
                base = "" if link.startswith("/") else "/".join(parts[:i])
                path = posixpath.normpath("/" + "/".join(p for p in (base, link, rest) if p))
                break
        else:
            return relative
    raise InvalidParameter(f"too many levels of symbolic links in the container path {destination}")


def readonly_submounts(source: Path, target: str) -> list[str]:
    """One read-only bind per host mount below ``source`` (LXC makes only the top of an
    ``rbind,ro`` read-only): the per-submount way of a recursive read-only bind."""
    prefix = os.path.realpath(source)
    lines = []
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in points:
        point = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1), 8)), point)
        if point.startswith(prefix + "/"):
            inner = posixpath.join(target, point[len(prefix) + 1:])
            lines.append(_line("lxc.mount.entry", f"{_fstab(point)} {_fstab(inner)} none bind,ro 0 0"))
    return lines


def cgroup_lines(spec: ProcessSpec, v2: bool) -> list[str]:
    """The device rules and limits: ``lxc.cgroup.*`` keys on a cgroup v1 (or hybrid) host,
    ``lxc.cgroup2.*`` on a unified one, where LXC writes ``memory.max`` and the like and turns
    the device rules into an eBPF program of its own. Values are those of the native driver:
    ``MemorySwap`` (memory plus swap) becomes swap alone in ``memory.swap.max``, ``CpuShares``
    a ``cpu.weight`` (``policy.cpu_weight``)."""
    prefix = "lxc.cgroup2" if v2 else "lxc.cgroup"
    if spec.privileged:
        lines = [_line(f"{prefix}.devices.allow", "a")]
    else:
        lines = [_line(f"{prefix}.devices.deny", "a")]
        lines.extend(_line(f"{prefix}.devices.allow", rule) for rule in DEVICE_WHITELIST)
    res = spec.resources
    swap_limit = res.memory and res.memory_swap != -1 and memory_limits()[1]
    if res.memory and v2:
        lines.append(_line("lxc.cgroup2.memory.max", res.memory))
        if swap_limit:
            lines.append(_line("lxc.cgroup2.memory.swap.max",
                               res.memory_swap - res.memory if res.memory_swap > 0 else res.memory))
    elif res.memory:
        lines.append(_line("lxc.cgroup.memory.limit_in_bytes", res.memory))
        if swap_limit:
            swap = res.memory_swap if res.memory_swap > 0 else 2 * res.memory
            lines.append(_line("lxc.cgroup.memory.memsw.limit_in_bytes", swap))
    if res.cpu_shares:
        lines.append(_line("lxc.cgroup2.cpu.weight", cpu_weight(res.cpu_shares)) if v2
                     else _line("lxc.cgroup.cpu.shares", max(res.cpu_shares, 2)))
    if res.pids:
        lines.append(_line(f"{prefix}.pids.max", res.pids))
    return lines
