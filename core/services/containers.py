"""The container service: the container records, their state on disk, and the operations that
do not run anything (create, inspect, list, remove, changes, export, copy, commit, top).
Running them — start, stop, kill, wait, restart, attach, restore — is ``moorage.core.services.runner``.

On disk, per container, ``<root>/containers/<id>/``:

    config.json      the inspect object (reference §2.4) plus ``Moorage``: what core needs to
                     find the container again (its drivers, its network endpoint, the last
                     start's host config with allocated host ports written back)
    hostname, hosts, resolv.conf   written at every start, bind-mounted into the container
    <id>-json.log    the output, written by the exec driver
    exec/            the exec driver's own files

``config.json`` is written atomically at every state change (one write: Docker's separate
``hostconfig.json`` is folded into it). A container is created in ``containers/_tmp`` and renamed
into place; it is removed by renaming it back there first, then its layers are removed and its
files deleted in the background: a daemon killed at any moment restarts with whole containers
only, and finishes interrupted removals at start.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.pools import Executor
from moorage.core.sdk.errors import Impossible, InvalidParameter, NotFound
from moorage.core.sdk.hookspecs.exec import ExecDriver
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.core.sdk.hookspecs.network import NetworkDriver
from moorage.core.sdk.ids import PrefixIndex, new_id, short_id
from moorage.core.sdk.store import atomic_write, ensure_dir, fsync_dir, read_json, replace_file, write_new
from moorage.core.services import container_config
from moorage.core.services.container import Container
from moorage.core.services.container_model import ContainerConfig, HostConfig, InternalState
from moorage.core.services.events import EventBus
from moorage.core.services.images import ImageService, ImageUsers, format_time
from moorage.core.services.names import NameRegistry
from moorage.core.services.volumes import remove_own_volumes

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ContainerDrivers:
    """The drivers containers are made and run with: the graph driver, and the selected
    network and exec drivers (None when the daemon has none)."""

    graph: GraphDriver
    network: NetworkDriver | None = None
    exec: ExecDriver | None = None


class ContainerService:
    """Containers of one daemon. Thread-safe; methods block (the API calls them through
    ``kernel.run_blocking``)."""

    def __init__(self, root: Path, images: ImageService, image_users: ImageUsers, names: NameRegistry,
                 drivers: ContainerDrivers, events: EventBus, hooks: LifecycleHooks, executor: Executor) -> None:
        self.root = Path(root)
        self.dir = ensure_dir(self.root / "containers")
        self.tmp = ensure_dir(self.dir / "_tmp")
        self.images = images
        #: the images this service's containers are built on, which the image service reads
        self.image_users = image_users
        self.names = names
        self.graph = drivers.graph
        #: the selected network and exec drivers (None when the daemon has none)
        self.network = drivers.network
        self.exec = drivers.exec
        self.events = events
        self.hooks = hooks
        self.executor = executor
        self._containers: dict[str, Container] = {}
        self._index = PrefixIndex()
        self._lock = threading.Lock()
        self._recover()
        self._load()

    # -- records ---------------------------------------------------------------------------
    def _recover(self) -> None:
        """Finish what a killed daemon left half-done: half-created or half-removed containers."""
        network = self.network
        for entry in self.tmp.iterdir():
            cid = entry.name.removeprefix("creating-").removeprefix("removing-")
            if network is not None:
                try:
                    network.release(cid)
                except Exception:
                    log.exception("could not release the network of interrupted container %s", cid[:12])
            self._release_exec(cid)
            self.names.purge(cid)
            for layer in (cid, f"{cid}-init"):  # and the init layer of one made before they were shared
                try:
                    if self.graph.exists(layer):
                        self.graph.remove(layer)
                except Exception:
                    log.exception("could not remove layer %s of an interrupted container", layer)
            shutil.rmtree(entry, ignore_errors=True)

    def _load(self) -> None:
        for entry in sorted(self.dir.iterdir()):
            if entry.name.startswith("_") or not entry.is_dir():
                continue
            data = read_json(entry / "config.json")
            if not data or data.get("ID") != entry.name:
                log.error("skipping container directory %s: no config or an id that does not match", entry)
                continue
            try:
                container = Container.from_disk(data, entry)
            except Exception:
                log.exception("skipping container %s: unreadable config", entry.name)
                continue
            if not container.state.running:
                container.exited.set()
                container.cleaned.set()
            if self.names.name_of(container.id) is None:
                container.name = self.names.generate(container.id)  # as Docker: a random name
            self._containers[container.id] = container
            self._index.add(container.id)
            self.image_users.add(container.image)
        for path, target in self.names.all_names().items():
            if target not in self._containers and path.count("/") == 1:
                self.names.purge(target)  # a name whose container never came to exist

    def __len__(self) -> int:
        return len(self._containers)

    def all(self) -> list[Container]:
        with self._lock:
            return sorted(self._containers.values(), key=lambda c: (c.created, c.id), reverse=True)

    def lookup(self, name: str) -> Container | None:
        """By name or link path first, then by unique id prefix (reference §2.1)."""
        cid = self.names.resolve(name) if name else None
        if cid is None:
            cid = self._index.find(name)
        with self._lock:
            return self._containers.get(cid) if cid else None

    def get(self, name: str) -> Container:
        container = self.lookup(name)
        if container is None:
            raise NotFound(f"No such container: {name}")
        return container

    def save(self, container: Container, durable: bool = True) -> None:
        """Write ``config.json`` atomically. ``durable=False`` skips the fsyncs: for run state
        (started, exited), which describes processes that do not outlive a host crash either;
        a killed daemon still finds the new or the old file whole."""
        data = self._serialize(container)
        path = container.directory / "config.json"
        if durable:
            atomic_write(path, data)
        else:
            replace_file(path, data, 0o600)

    @staticmethod
    def _serialize(container: Container) -> bytes:
        # no indent: the json module's C encoder only serves unindented output (3x faster; the
        # save is on the path of every create and start)
        return json.dumps(container.to_disk()).encode() + b"\n"

    def names_of(self, container: Container) -> list[str]:
        return self.names.names_of(container.id)

    def image_name(self, image_id: str) -> str:
        """The image's first ``repo:tag`` (alphabetically), else its short id: the events'
        ``from`` and the list's ``Image``."""
        tags = sorted(f"{r}:{t}" for r, t in self.images.tags.tags_of(image_id))
        return tags[0] if tags else short_id(image_id)

    def publish(self, status: str, container: Container, **attributes: str) -> None:
        image = self.image_name(container.image)
        attributes.update(image=image, name=container.name.lstrip("/"))
        self.events.publish(status, short_id(container.id), image, type="container", actor_id=container.id,
                                   attributes=attributes)

    # -- create ----------------------------------------------------------------------------
    def create(self, body: Any, name: str | None = None) -> tuple[Container, list[str]]:
        began = time.monotonic()
        config = container_config.normalize_config(body)
        host_config = container_config.create_host_config(body, config)
        if not config.image:
            raise InvalidParameter("Bad parameter: Image is required")
        image = self.images.lookup(config.image)
        if image is None:
            repo, _, tag = config.image.rpartition(":") if ":" in config.image.split("/")[-1] else (
                config.image, "", "")
            raise NotFound(f"No such image: {repo or config.image} (tag: {tag or 'latest'})")
        warnings = container_config.merge_with_image(config, image.config)
        container_config.validate(config)
        path, args = container_config.command(config)
        cid = new_id()
        if not config.hostname:
            config.hostname = cid[:12]
        registered = self.names.reserve(name, cid) if name else self.names.generate(cid)
        staging = self.tmp / f"creating-{cid}"
        with self.images.pinned(image.id):  # the image and its init layer stay until it is registered
            container = self._create(cid, image.id, path, args, config, registered, staging, host_config)
        self.publish("create", container)
        self.hooks.container_created(cid, config.to_api(), container.created, time.monotonic() - began, self.graph.name)
        return container, warnings

    def _create(self, cid: str, image_id: str, path: str, args: list[str], config: ContainerConfig, name: str,
                staging: Path, host_config: HostConfig) -> Container:
        """The layers and the directory of a new container, then its record; on failure nothing
        is left (the name reservation included)."""
        try:
            staging.mkdir(mode=0o700)
            init = self.images.init_layers.ensure(image_id)
            self.graph.create(cid, init)
            container = Container(id=cid, created=format_time(), path=path, args=args, config=config, image=image_id,
                                  name=name, directory=self.dir / cid, host_config=host_config,
                                  internal=InternalState(graph_driver=self.graph.name, init_layer=init))
            container.exited.set()
            container.cleaned.set()
            container.directory = staging
            write_new(staging / "config.json", self._serialize(container))
            os.rename(staging, self.dir / cid)
            fsync_dir(self.dir)
            container.directory = self.dir / cid
        except BaseException:
            self.names.purge(cid)
            shutil.rmtree(staging, ignore_errors=True)
            try:
                if self.graph.exists(cid):
                    self.graph.remove(cid)
            except Exception:
                log.exception("could not remove the layer of a failed create %s", short_id(cid))
            raise
        with self._lock:
            self._containers[cid] = container
            self._index.add(cid)
        self.image_users.add(image_id)
        return container

    # -- rename ----------------------------------------------------------------------------
    def rename(self, name: str, new_name: str) -> None:
        """Give the container a new name (beyond 1.6: ``docker rename``); the links under its
        old name move with it, and links to it keep their aliases."""
        container = self.get(name)
        if not new_name:
            raise InvalidParameter("Bad parameter: a new name is required")
        with container.lock:
            old = container.name
            container.name = self.names.rename(container.id, new_name)
            self.save(container)
        self.publish("rename", container, oldName=old)

    # -- remove ----------------------------------------------------------------------------
    def remove(self, name: str, volumes: bool = False) -> None:
        """Remove a stopped container. It is gone once its directory is renamed away; its
        layers go before the answer (an image it was built on can be deleted right after),
        its files afterwards in a worker thread (and at the next start if the daemon dies
        first)."""
        container = self.get(name)
        with container.lock:
            if container.state.running:
                raise Impossible("Impossible to remove a running container, please stop it first")
            container.removed = True
            with self._lock:
                self._containers.pop(container.id, None)
                self._index.discard(container.id)
            self.image_users.discard(container.image)
            trash = self.tmp / f"removing-{container.id}"
            os.rename(container.directory, trash)
            fsync_dir(self.dir)
            # the name after the directory: a daemon killed between the two purges it at its
            # restart (``_recover``); the other way round, it found the container without its
            # name and gave it a random one (bench/soak.py)
            self.names.purge(container.id)
            container.directory = trash
            container.cleaned.wait()  # the last run's rootfs is released
            if self.network is not None:  # unknown ids are ignored: also covers a start that failed half-way
                self.network.release(container.id)
            self._release_exec(container.id)
            for layer in (container.id, f"{container.id}-init"):  # and an init layer of its own, if old
                if self.graph.exists(layer):
                    self.graph.remove(layer)
        self.executor.submit(self._delete, container, volumes)

    def _delete(self, container: Container, volumes: bool) -> None:
        try:
            if volumes:
                remove_own_volumes(self.root / "volumes", container, self.all())
            shutil.rmtree(container.directory, ignore_errors=True)
        except Exception:
            log.exception("deleting the files of removed container %s", short_id(container.id))
        # published once the files are gone (and so after the DELETE was answered): today's docker
        # CLI stops following a `run --rm` at this event
        self.publish("destroy", container)
        self.hooks.container_destroyed(container.id)

    def _release_exec(self, container_id: str) -> None:
        """The exec driver may hold something for any container it ever saw (cgroups made just
        before a daemon died); releasing an unknown id is harmless."""
        if self.exec is None:
            return
        try:
            self.exec.release(container_id)
        except Exception:
            log.exception("exec driver release of %s", container_id[:12])
