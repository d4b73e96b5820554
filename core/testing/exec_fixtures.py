"""The exec contract's fixtures and helpers: ``Runner`` (starts containers, and at the test's
end kills, releases and checks that nothing is left), ``ExecFixtures`` (``runner``, ``driver``,
``make_spec``) and the small checks the suites share. ``moorage.core.testing.exec`` describes
the suite."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from moorage.core.sdk.errors import NotFound
from moorage.core.sdk.hookspecs.exec import ExecDriver, ProcessSpec, Stream
from moorage.core.sdk.logs import read_log
from moorage.core.sdk.mounts import CGROUP_ROOT, mounts_below
from moorage.core.testing.driver import DriverFactory

ENV = ["HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "container=lxc",
       "HOSTNAME=contract"]
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
CAP_SYS_ADMIN = 21
CAP_MKNOD = 27
CAP_CHOWN = 0
CAP_NET_BIND_SERVICE = 10


def cgroup_file(pid: int, controller: str, name: str) -> str:
    """The content of file ``name`` of the ``controller`` cgroup process ``pid`` is in."""
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return (CGROUP_ROOT / controller / path.lstrip("/") / name).read_text().strip()
    raise AssertionError(f"process {pid} is in no {controller} cgroup")


def cgroups_named(container_id: str) -> list[Path]:
    """cgroup directories (three levels deep in each v1 hierarchy) whose name holds the id."""
    found = []
    for top in CGROUP_ROOT.iterdir():
        for dirpath, dirnames, _ in os.walk(top):
            depth = len(Path(dirpath).relative_to(top).parts)
            if container_id in Path(dirpath).name:
                found.append(Path(dirpath))
            if depth >= 3:
                dirnames.clear()
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def log_text(spec: ProcessSpec, stream: str = "stdout") -> str:
    return "".join(e.log for e in read_log(spec.log_path, (stream,)))


def read_all(attachment) -> list[tuple[Stream, bytes]]:
    chunks = []
    while (chunk := attachment.read()) is not None:
        chunks.append(chunk)
    return chunks


def joined(chunks: list[tuple[Stream, bytes]], stream: Stream | None = None) -> bytes:
    return b"".join(data for s, data in chunks if stream is None or s == stream)


def cap_bits(text: str, field: str) -> int:
    match = re.search(rf"^{field}:\s*([0-9a-f]+)$", text, re.M)
    assert match, f"no {field} in {text!r}"
    return int(match.group(1), 16)


class Runner:
    """Starts containers for one test and guarantees they are gone afterwards."""

    def __init__(self, factory: DriverFactory) -> None:
        self.factory = factory
        self.driver: ExecDriver = factory()
        self.home = self.driver.home
        self.specs: list[ProcessSpec] = []
        self.pids: list[int] = []

    def start(self, spec: ProcessSpec, on_namespace: Callable[[int], None] | None = None) -> int:
        self.specs.append(spec)
        pid = self.driver.start(spec, on_namespace)
        self.pids.append(pid)
        return pid

    def restart_daemon(self) -> ExecDriver:
        """Drop the driver object (as a killed daemon would) and make a new one on the same home."""
        self.factory.shutdown(self.driver)
        self.driver = self.factory()
        return self.driver

    def finish(self) -> list[str]:
        problems = []
        for spec in self.specs:
            cid = spec.container_id
            try:
                self.driver.signal(cid, signal.SIGKILL)
                self.driver.wait(cid, timeout=10)
            except NotFound:
                try:
                    self.driver.restore(spec)
                    self.driver.signal(cid, signal.SIGKILL)
                    self.driver.wait(cid, timeout=10)
                except NotFound:
                    pass
            self.driver.release(cid)
        self.factory.shutdown(self.driver)
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
                problems.append(f"process {pid} survived release")
        for spec in self.specs:
            for path in cgroups_named(spec.container_id):
                problems.append(f"cgroup {path} left behind")
            for point in mounts_below(spec.rootfs):
                problems.append(f"mount {point} left behind")
                os.system(f"umount -l '{point}'")
        return problems


class ExecFixtures:
    """The fixtures of the suite, for a driver's own extra tests, against ``moorage_driver``."""

    family = "exec"

    @pytest.fixture
    def runner(self, driver_factory) -> Iterator[Runner]:
        runner = Runner(driver_factory)
        yield runner
        problems = runner.finish()
        assert not problems, problems

    @pytest.fixture
    def driver(self, runner) -> ExecDriver:
        return runner.driver

    @pytest.fixture
    def make_spec(self, busybox_rootfs, tmp_path) -> Callable[..., ProcessSpec]:
        def make(args: list[str], **fields) -> ProcessSpec:
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            state_dir = tmp_path / "containers" / cid
            state_dir.mkdir(parents=True)
            rootfs = tmp_path / f"rootfs-{cid[:12]}"
            shutil.copytree(busybox_rootfs, rootfs, symlinks=True)
            fields.setdefault("env", list(ENV))
            fields.setdefault("hostname", "contract")
            return ProcessSpec(container_id=cid, rootfs=rootfs, args=args, state_dir=state_dir,
                               log_path=state_dir / f"{cid}-json.log", **fields)

        return make

    def run_to_exit(self, runner: Runner, spec: ProcessSpec) -> int:
        runner.start(spec)
        status = runner.driver.wait(spec.container_id, timeout=30)
        assert status is not None, "the process did not exit"
        return status
