"""What a test run leaves on the host: the session-end check of tests/conftest.py.

A snapshot is taken when the run starts and another when it ends (after every fixture, on
every xdist worker, was torn down). What the run made and did not remove is a failure.

Which leftovers are the run's own:

- **processes**: every process the run starts (daemons, their zygotes and monitors, LXC, the
  test registry, qemu) inherits ``MOORAGE_TEST_SESSION=<token>`` from the pytest process;
  pytest itself and its xdist workers are excluded by pid.
- **mounts and loop devices** below the run's base temporary directory (every daemon root,
  btrfs image and test filesystem lives there).
- **cgroups, network links, network namespaces and nft tables** carry names nobody can tie
  to one run (container ids, hashed veth names), so they are compared only in ``strict`` mode:
  what appeared during the run and is still there at its end. CI runs alone on its machine and
  is strict (``CI`` set); on a machine where other test runs share the host, the default
  (``session``) checks only what is certainly this run's. ``MOORAGE_LEAK_CHECK=strict|session|off``
  chooses.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SESSION_VARIABLE = "MOORAGE_TEST_SESSION"
MODE_VARIABLE = "MOORAGE_LEAK_CHECK"
CGROUP_ROOT = Path("/sys/fs/cgroup")
#: how long cleanup that finishes in the background (a veth deleted by a thread, a monitor
#: exiting after its container) gets before what is left counts
GRACE_SECONDS = 10.0


def session_token(worker: bool) -> tuple[str, bool]:
    """This run's token, exported for every process it starts, and whether the run is nested
    in another (started by one of its tests). An xdist worker keeps its controller's token (it
    inherited it); anything else gets a fresh one."""
    inherited = os.environ.get(SESSION_VARIABLE, "")
    if worker and inherited:
        return inherited, False
    token = uuid.uuid4().hex
    os.environ[SESSION_VARIABLE] = token
    return token, bool(inherited)


def check_mode(nested: bool = False) -> str:
    """``MOORAGE_LEAK_CHECK``, else ``strict`` in CI and ``session`` elsewhere. A run nested in
    another is never strict: the outer run's resources come and go while it runs."""
    mode = os.environ.get(MODE_VARIABLE) or ("strict" if os.environ.get("CI") else "session")
    if mode not in ("strict", "session", "off"):
        raise ValueError(f"{MODE_VARIABLE}={mode!r}: expected strict, session or off")
    return "session" if nested and mode == "strict" else mode


def _unescape(field_: str) -> str:
    """A mountinfo path: space, tab, newline and backslash are octal escapes."""
    return field_.encode().decode("unicode_escape") if "\\" in field_ else field_


def _cgroups() -> set[str]:
    """moorage's and LXC's cgroup directories: ``<hierarchy>/moorage*`` (v1, and v2 at any
    depth up to the daemon's own cgroup) with what is below, and ``<hierarchy>/lxc.*``."""
    found: set[str] = set()
    if not CGROUP_ROOT.is_dir():
        return found
    pending = [(CGROUP_ROOT, 0)]
    while pending:
        directory, depth = pending.pop()
        try:
            entries = [e for e in os.scandir(directory) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(("moorage", "lxc.")) or directory != CGROUP_ROOT and "moorage" in entry.path:
                found.add(entry.path)
                pending.append((Path(entry.path), depth + 1))
            elif depth < 2:
                pending.append((Path(entry.path), depth + 1))
    return found


def _mounts() -> dict[str, str]:
    """Mount point -> ``fstype source``, from this process's mount table."""
    mounts = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            tail = fields[fields.index("-") + 1:]
            mounts[_unescape(fields[4])] = f"{tail[0]} {_unescape(tail[1])}"
    return mounts


def _loop_devices() -> dict[str, str]:
    """Loop device -> its backing file."""
    found = {}
    for device in Path("/sys/block").glob("loop*"):
        backing = device / "loop" / "backing_file"
        try:
            found[f"/dev/{device.name}"] = backing.read_text().strip()
        except OSError:
            continue
    return found


def _links() -> set[str]:
    try:
        return set(os.listdir("/sys/class/net"))
    except OSError:
        return set()


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except OSError:
        return set()


def _nft_tables() -> set[str]:
    try:
        listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return set(listed.stdout.splitlines()) if listed.returncode == 0 else set()


def _processes(token: str, exclude: set[int]) -> set[str]:
    """``pid command`` of every process carrying this run's token (but ``exclude``)."""
    needle = f"{SESSION_VARIABLE}={token}\0".encode()
    found = set()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read() + b"\0":
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue  # gone, or a kernel thread
        found.add(f"{name} {command[:200]}")
    return found


@dataclass
class HostState:
    """What of the host a test run may leave behind, at one moment."""

    cgroups: set[str] = field(default_factory=set)
    mounts: dict[str, str] = field(default_factory=dict)
    loop_devices: dict[str, str] = field(default_factory=dict)
    links: set[str] = field(default_factory=set)
    netns: set[str] = field(default_factory=set)
    nft_tables: set[str] = field(default_factory=set)

    @classmethod
    def now(cls) -> HostState:
        return cls(_cgroups(), _mounts(), _loop_devices(), _links(), _netns(), _nft_tables())


@dataclass
class LeakCheck:
    """The check of one test run: ``start`` when it begins, ``leftovers`` when it ends."""

    token: str
    mode: str
    before: HostState = field(default_factory=HostState)

    def start(self) -> None:
        if self.mode != "off":
            self.before = HostState.now()

    def _find(self, basetemp: Path, exclude: set[int]) -> list[str]:
        def mine(path: str) -> bool:
            return path == str(basetemp) or path.startswith(f"{basetemp}/")

        now, before = HostState.now(), self.before
        found = [f"process {p}" for p in sorted(_processes(self.token, exclude))]
        found += [f"mount {point} ({what})" for point, what in sorted(now.mounts.items())
                  if mine(point) or self.mode == "strict" and point not in before.mounts
                  and any(k in f"{point} {what}" for k in ("moorage", "overlay", "btrfs"))]
        found += [f"loop device {dev} ({backing})" for dev, backing in sorted(now.loop_devices.items())
                  if mine(backing.removesuffix(" (deleted)"))
                  or self.mode == "strict" and before.loop_devices.get(dev) != backing]
        if self.mode == "strict":
            found += [f"cgroup {p}" for p in sorted(now.cgroups - before.cgroups)]
            found += [f"network link {n}" for n in sorted(now.links - before.links)]
            found += [f"network namespace {n}" for n in sorted(now.netns - before.netns)]
            found += [f"nft {t}" for t in sorted(now.nft_tables - before.nft_tables)]
        return found

    def leftovers(self, basetemp: Path, exclude: set[int], grace: float = GRACE_SECONDS) -> list[str]:
        """What the run left, after ``grace`` seconds for cleanup still under way."""
        if self.mode == "off":
            return []
        deadline = time.monotonic() + grace
        while (found := self._find(basetemp, exclude)) and time.monotonic() < deadline:
            time.sleep(0.5)
        return found
