"""What a build that a killed daemon interrupted leaves behind, and its removal at the next start.

A build's intermediate containers (RUN and ADD steps) would outlive a daemon killed in the
middle of the build: no answered request made them, and no later request would remove them.
So each is noted in its build's directory, in ``intermediates/``, *before* it is created: the
builder gives it a fresh name and writes the name there (a new file, fsynced with its
directory), then creates the container under that name. A build that ends, in success or in
an error, removes its directory with the record (the containers of a failed build stay, as
Docker's did). When the daemon starts, before the API listens, ``sweep`` finds the directories
of builds that did not end, kills and removes the containers their records name, and removes
the directories. A name noted whose container was never created is simply not found.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import shutil
from pathlib import Path

from moorage.core.sdk.errors import Conflict
from moorage.core.sdk.store import ensure_dir, fsync_dir
from moorage.core.services.containers import ContainerService
from moorage.core.services.runner import Runner

log = logging.getLogger(__name__)

#: each build's directory is ``<home>/build-<random>``, with its ``flock``-ed lock file
BUILD_PREFIX = "build-"
LOCK = ".lock"
INTERMEDIATES = "intermediates"
#: a directory a build was still setting up (not yet renamed to ``build-...``)
SETUP_PREFIX = ".new-"


class IntermediateRecord:
    """The names of one build's intermediate containers, each noted durably before the
    container exists, in ``<build directory>/intermediates/<name>``."""

    def __init__(self, build_dir: Path) -> None:
        self.directory = build_dir / INTERMEDIATES

    def create(self, containers: ContainerService, config: dict):
        """Note a fresh name, then create the container ``config`` describes under it; the
        container. A name some container already holds (never in practice) is drawn again."""
        for _ in range(3):
            name = f"build_{secrets.token_hex(6)}"
            self._note(name)
            try:
                container, _ = containers.create(config, name=name)
            except Conflict:
                continue
            return container
        raise Conflict("Conflict: could not draw a free name for an intermediate container")

    def _note(self, name: str) -> None:
        fresh = not self.directory.is_dir()
        ensure_dir(self.directory)
        if fresh:
            fsync_dir(self.directory.parent)
        fd = os.open(self.directory / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.close(fd)
        fsync_dir(self.directory)

    def clear(self) -> None:
        """The build answers for its containers no more (it removed them, or keeps them on
        purpose): a kill from now on leaves them alone."""
        shutil.rmtree(self.directory, ignore_errors=True)
        fsync_dir(self.directory.parent)

    def names(self) -> list[str]:
        try:
            return sorted(entry.name for entry in self.directory.iterdir())
        except FileNotFoundError:
            return []


def _unlocked(build_dir: Path) -> bool:
    """No build holds the directory (the daemon that ran it is dead)."""
    try:
        fd = os.open(build_dir / LOCK, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return True  # killed before the lock file was made
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def remove_container(containers: ContainerService, runner: Runner, name: str) -> None:
    """Kill (it may still run: live restore re-adopted it) and remove the container ``name``,
    with its volumes, which are nobody's; nothing if there is none."""
    container = containers.lookup(name)
    if container is None:
        return
    runner.kill(container.id)
    containers.remove(container.id, volumes=True)


def sweep(home: Path, containers: ContainerService, runner: Runner) -> None:
    """At start, before the API listens: remove the intermediate containers and the directories
    of builds a killed daemon interrupted. A directory whose containers could not all be
    removed is kept (and logged), so that the next start tries again."""
    if not home.is_dir():
        return
    for entry in sorted(home.iterdir()):
        if not entry.name.startswith((BUILD_PREFIX, SETUP_PREFIX)) or not _unlocked(entry):
            continue
        record = IntermediateRecord(entry)
        left = []
        for name in record.names():
            try:
                remove_container(containers, runner, name)
                log.info("removed intermediate container %s of a build the daemon was killed in", name)
            except Exception:
                log.exception("could not remove intermediate container %s of an interrupted build", name)
                left.append(name)
        if left:
            continue
        log.info("removing %s, left by an interrupted build", entry)
        shutil.rmtree(entry, ignore_errors=True)
