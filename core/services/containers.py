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

import copy
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.pools import Executor
from moorage.core.sdk.archive import Chunks, IterStream, tree_tar, tree_tar_in_root, write_file_in_root
from moorage.core.sdk.errors import Impossible, InvalidParameter, NotFound, NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import ExecDriver
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.core.sdk.hookspecs.network import NetworkDriver
from moorage.core.sdk.humanize import human_duration
from moorage.core.sdk.ids import PrefixIndex, new_id, short_id
from moorage.core.sdk.layers import differ_for
from moorage.core.sdk.store import atomic_write, ensure_dir, fsync_dir, read_json, replace_file, write_new
from moorage.core.sdk.validation import check_container_path, clean_path
from moorage.core.services import container_config as cc
from moorage.core.services.events import EventBus
from moorage.core.services.images import ImageService, ImageUsers, format_time, parse_time
from moorage.core.services.names import NameRegistry
from moorage.core.services.tags import DEFAULT_TAG, validate_repo_name, validate_tag_name

log = logging.getLogger(__name__)

ZERO_TIME = "0001-01-01T00:00:00Z"
EMPTY_NETWORK = {"IPAddress": "", "IPPrefixLen": 0, "Gateway": "", "Bridge": "", "PortMapping": None, "Ports": None}


@dataclass
class State:
    running: bool = False
    pid: int = 0
    exit_code: int = 0
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    ghost: bool = False
    #: frozen by ``pause`` (beyond 1.6: today's CLI shows it)
    paused: bool = False

    def to_api(self) -> dict:
        return {"Running": self.running, "Pid": self.pid, "ExitCode": self.exit_code,
                "StartedAt": self.started_at, "FinishedAt": self.finished_at, "Ghost": self.ghost,
                "Paused": self.paused}

    @classmethod
    def from_api(cls, data: dict) -> State:
        return cls(running=bool(data.get("Running")), pid=int(data.get("Pid") or 0),
                   exit_code=int(data.get("ExitCode") or 0), started_at=data.get("StartedAt") or ZERO_TIME,
                   finished_at=data.get("FinishedAt") or ZERO_TIME, ghost=bool(data.get("Ghost")),
                   paused=bool(data.get("Paused")))


@dataclass
class Container:
    id: str
    created: str
    path: str
    args: list[str]
    config: dict
    image: str
    name: str
    directory: Path
    state: State = field(default_factory=State)
    network: dict = field(default_factory=lambda: dict(EMPTY_NETWORK))
    volumes: dict[str, str] = field(default_factory=dict)
    volumes_rw: dict[str, bool] = field(default_factory=dict)
    #: what core needs beyond the inspect object: drivers used, the network endpoint
    internal: dict = field(default_factory=dict)
    host_config: dict = field(default_factory=lambda: dict(cc.HOST_CONFIG_FIELDS))
    #: serialises start/stop/kill/remove of this container
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)
    #: set once the current run's exit is recorded (also when never started): ``wait`` returns
    exited: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    #: set once what the last run held (rootfs mount, network, exec driver state) is released
    cleaned: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    #: set under ``lock`` when the container is removed: a start that raced with it must fail
    removed: bool = field(default=False, repr=False, compare=False)
    #: a client stopped or killed it: its restart policy does not start it again
    stop_requested: bool = field(default=False, repr=False, compare=False)

    @property
    def init_layer(self) -> str:
        """The layer below the container's own: its image's shared init layer (containers made
        before init layers were shared have one of their own, ``<container id>-init``)."""
        return self.internal.get("InitLayer") or f"{self.id}-init"

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.id}-json.log"

    def to_api(self, copied: bool = True, host_config: bool = True) -> dict:
        """The inspect object, keys in Docker 0.6.5's order; ``copied=False`` shares the nested
        config (for serializing it at once); ``host_config=False`` leaves the derived
        ``HostConfig`` out (``config.json``, written at every start, keeps the saved one)."""
        clone = copy.deepcopy if copied else (lambda value: value)
        data = {
            "ID": self.id, "Created": self.created, "Path": self.path, "Args": list(self.args),
            "Config": clone(self.config), "State": self.state.to_api(), "Image": self.image,
            "NetworkSettings": clone(self.network), "SysInitPath": "",
            "ResolvConfPath": str(self.directory / "resolv.conf"),
            "HostnamePath": str(self.directory / "hostname"), "HostsPath": str(self.directory / "hosts"),
            "Name": self.name, "Volumes": dict(self.volumes), "VolumesRW": dict(self.volumes_rw),
            "Driver": self.internal.get("GraphDriver", ""),
        }
        if host_config:  # beyond 1.6 (Docker 0.7 added it): today's `docker inspect` and `docker port` read it
            data["HostConfig"] = cc.effective_host_config(self.config, self.host_config)
        return data

    def to_disk(self) -> dict:
        """What ``config.json`` holds; shares nested values with the container (serialize it
        at once)."""
        data = self.to_api(copied=False, host_config=False)  # the saved one is ``Moorage.HostConfig``
        data["Moorage"] = {**self.internal, "HostConfig": self.host_config}
        return data

    @classmethod
    def from_disk(cls, data: dict, directory: Path) -> Container:
        c = cls(id=data["ID"], created=data["Created"], path=data["Path"], args=list(data.get("Args") or []),
                config=cc.normalize_config(data.get("Config")), image=data["Image"], name=data.get("Name", ""),
                directory=directory, state=State.from_api(data.get("State") or {}),
                network=data.get("NetworkSettings") or dict(EMPTY_NETWORK), volumes=data.get("Volumes") or {},
                volumes_rw=data.get("VolumesRW") or {}, internal=dict(data.get("Moorage") or {}))
        c.host_config = cc.normalize_host_config(c.internal.pop("HostConfig", None))
        return c


class ContainerService:
    """Containers of one daemon. Thread-safe; methods block (the API calls them through
    ``kernel.run_blocking``)."""

    def __init__(self, root: Path, images: ImageService, image_users: ImageUsers, names: NameRegistry,
                 graph: GraphDriver, network: NetworkDriver | None, exec_driver: ExecDriver | None,
                 events: EventBus, hooks: LifecycleHooks, executor: Executor) -> None:
        self.root = Path(root)
        self.dir = ensure_dir(self.root / "containers")
        self.tmp = ensure_dir(self.dir / "_tmp")
        self.images = images
        #: the images this service's containers are built on, which the image service reads
        self.image_users = image_users
        self.names = names
        self.graph = graph
        #: the selected network and exec drivers (None when the daemon has none)
        self.network = network
        self.exec = exec_driver
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
        config = cc.normalize_config(body)
        host_config = self._create_host_config(body, config)
        if not config["Image"]:
            raise InvalidParameter("Bad parameter: Image is required")
        image = self.images.lookup(config["Image"])
        if image is None:
            repo, _, tag = config["Image"].rpartition(":") if ":" in config["Image"].split("/")[-1] else (
                config["Image"], "", "")
            raise NotFound(f"No such image: {repo or config['Image']} (tag: {tag or 'latest'})")
        warnings = cc.merge_with_image(config, image.config)
        cc.validate(config)
        path, args = cc.command(config)
        cid = new_id()
        if not config["Hostname"]:
            config["Hostname"] = cid[:12]
        registered = self.names.reserve(name, cid) if name else self.names.generate(cid)
        staging = self.tmp / f"creating-{cid}"
        with self.images.pinned(image.id):  # the image and its init layer stay until it is registered
            container = self._create(cid, image.id, path, args, config, registered, staging, host_config)
        self.publish("create", container)
        self.hooks.container_created(cid, config, container.created, time.monotonic() - began, self.graph.name)
        return container, warnings

    @staticmethod
    def _create_host_config(body: Any, config: dict) -> dict:
        """The ``HostConfig`` today's clients send inside the create body (1.6 clients send it
        to start instead): checked now, so a bad or unsupported option fails ``docker run``
        before anything exists. Bind destinations become volumes and ``VolumesFrom`` moves
        into the config, where start looks for them (as the 0.6 CLI put them there)."""
        cc.check_supported_config(body)
        raw = None
        if isinstance(body, dict):
            raw = next((v for k, v in body.items() if str(k).lower() == "hostconfig"), None)
        cc.check_supported(raw, "create")
        host = cc.normalize_host_config(raw)
        cc.validate_host(host, "create")
        for spec in host["Binds"] or []:
            dest = cc.parse_bind(spec)[1]
            config["Volumes"] = {**(config["Volumes"] or {}), dest: {}}
        if host["VolumesFrom"]:
            config["VolumesFrom"] = ",".join(filter(None, [config["VolumesFrom"], *host["VolumesFrom"]]))
        return host

    def _create(self, cid: str, image_id: str, path: str, args: list[str], config: dict, name: str,
                staging: Path, host_config: dict | None = None) -> Container:
        """The layers and the directory of a new container, then its record; on failure nothing
        is left (the name reservation included)."""
        try:
            staging.mkdir(mode=0o700)
            init = self.images.init_layers.ensure(image_id)
            self.graph.create(cid, init)
            container = Container(id=cid, created=format_time(), path=path, args=args, config=config, image=image_id,
                                  name=name, directory=self.dir / cid)
            container.internal = {"GraphDriver": self.graph.name, "InitLayer": init}
            if host_config is not None:
                container.host_config = host_config
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
                self._remove_volumes(container)
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

    def _remove_volumes(self, container: Container) -> None:
        """Delete the container's own volumes (never bind sources, never volumes another
        container still uses)."""
        volumes_dir = (self.root / "volumes").resolve()
        in_use = {p for c in self.all() for p in c.volumes.values()}
        for host_path in container.volumes.values():
            path = Path(host_path).resolve()
            if path.parent.parent == volumes_dir and host_path not in in_use:
                shutil.rmtree(path.parent, ignore_errors=True)

    # -- inspect and list ------------------------------------------------------------------
    def inspect(self, name: str) -> dict:
        container = self.get(name)
        data = container.to_api()
        # links live in the name graph once started: shown as Docker did, "/child:/parent/alias"
        links = [f"{self.names.name_of(child)}:{path}"
                 for path, child in sorted(self.names.children(container.name).items())]
        if links:
            data["HostConfig"]["Links"] = links
        return data

    def status(self, container: Container) -> str:
        if container.state.running:
            if container.state.ghost:
                return "Ghost"
            up = "Up " + human_duration(time.time() - parse_time(container.state.started_at))
            return up + " (Paused)" if container.state.paused else up
        return f"Exit {container.state.exit_code}"

    def list(self, all: bool = False, limit: int = -1, since: str = "", before: str = "",
             size: bool = False) -> list[dict]:
        """``GET /containers/json`` rows (reference §2.5), newest first."""
        containers = self.all()
        everything = all or limit > 0 or since or before
        rows: list[dict] = []
        found_before = not before
        for container in containers:
            cid12 = container.id[:12]
            if not found_before:
                if before in (cid12, container.id):
                    found_before = True
                continue
            if since and since in (cid12, container.id):
                break
            if not everything and not container.state.running:
                continue
            if limit > 0 and len(rows) >= limit:
                break
            rows.append(self._row(container, size))
        return [] if limit == 0 else rows

    def _row(self, container: Container, size: bool) -> dict:
        row = {
            "Id": container.id,
            "Image": self.image_name(container.image),
            "Command": f"{container.path} {' '.join(container.args)}",
            "Created": parse_time(container.created),
            "Status": self.status(container),
            "Ports": port_rows(container),
            "SizeRw": 0,
            "SizeRootFs": 0,
            "Names": self.names_of(container),
        }
        if size:
            row["SizeRw"] = self.size_rw(container)
            row["SizeRootFs"] = row["SizeRw"] + self.images.virtual_size(self.images.get(container.image))
        return row

    def size_rw(self, container: Container) -> int:
        try:
            return int(differ_for(self.graph).diff_size(container.id, container.init_layer))
        except Exception:
            log.exception("size of %s", short_id(container.id))
            return 0

    # -- filesystem operations -------------------------------------------------------------
    def changes(self, name: str) -> list[dict] | None:
        container = self.get(name)
        changes = differ_for(self.graph).changes(container.id, container.init_layer)
        return [{"Path": c.path, "Kind": int(c.kind)} for c in changes] or None

    def export(self, name: str) -> Iterator[bytes]:
        """An uncompressed tar of the container's filesystem, entries under ``./``."""
        container = self.get(name)
        rootfs = self.graph.get(container.id)
        self.publish("export", container)
        return Chunks(tree_tar(rootfs, "."), lambda: self.graph.put(container.id))

    def copy(self, name: str, resource: str) -> Iterator[bytes]:
        """A tar of ``resource`` (and what is below it) named by its basename. The path is
        resolved by the kernel inside the container's root (``..`` and absolute symlinks
        stay in it), and the walk never follows a symlink."""
        container = self.get(name)
        if not resource:
            raise InvalidParameter("Resource cannot be empty")
        check_container_path(resource, "Resource")
        rootfs = self.graph.get(container.id)
        try:
            return tree_tar_in_root(rootfs, resource, done=lambda: self.graph.put(container.id))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"No such file or directory: {resource}") from None

    def commit(self, name: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
               config: Any = None, null_config: bool = False) -> str:
        """A new image from the container's changes; ``config`` becomes the image config as sent
        (an all-zero Config when absent: no merging, reference §6.4; ``null_config`` stores none,
        as insert did). Returns the full id."""
        container = self.get(name)
        if repo:  # refused before anything is stored
            validate_repo_name(repo)
            validate_tag_name(tag or DEFAULT_TAG)
        image_config = None if null_config else cc.normalize_config(config) if config else dict(cc.CONFIG_FIELDS)
        image = self.images.new_image(parent=container.image, comment=comment, container=container.id,
                                      container_config=copy.deepcopy(container.config), config=image_config,
                                      author=author)
        diff = differ_for(self.graph).diff(container.id, container.init_layer)
        self.images.register(image, IterStream(diff))
        if repo:
            self.images.tag(repo, tag or "latest", image.id)
        return image.id

    def insert(self, image_name: str, url: str, path: str, content: BinaryIO) -> str:
        """``POST /images/{name}/insert``: a new image holding ``content`` at ``path`` on top of
        the image, committed with no tag and a null config (reference §5.6). An existing path
        is refused (0.6.6). Returns the full new id; nothing is left behind on failure."""
        path = clean_path(path, "path")
        if not path.startswith("/") or path == "/":
            raise InvalidParameter(f"Bad parameter: path must be an absolute file path, not {path!r}")
        container, _ = self.create({"Image": image_name, "Cmd": ["echo", "insert", url, path]})
        try:
            rootfs = self.graph.get(container.id)
            try:
                write_file_in_root(rootfs, path, content, 0o600)  # the mode Docker gave downloads
            finally:
                self.graph.put(container.id)
            return self.commit(container.id, null_config=True)
        finally:
            self.remove(container.id)

    def top(self, name: str, ps_args: str = "") -> dict:
        """``ps`` on the host, limited to the container's processes (reference §3.5)."""
        container = self.get(name)
        if not container.state.running:
            raise StateError(f"Container {short_id(container.id)} is not running")
        if self.exec is None:
            raise NotSupported("no exec driver is available in this daemon")
        pids = {str(p) for p in self.exec.processes(container.id)}
        args = ps_args.split() if ps_args else ["-ef"]
        out = subprocess.run(["ps", *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise InvalidParameter(f"Error running ps: {out.stderr.strip()}")
        lines = out.stdout.splitlines()
        titles = lines[0].split()
        if "PID" not in titles:
            raise InvalidParameter("Couldn't find PID field in ps output")
        pid_column = titles.index("PID")
        processes = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) > pid_column and fields[pid_column] in pids:
                processes.append(fields)
        return {"Titles": titles, "Processes": processes}


def port_rows(container: Container) -> list[dict] | None:
    """The list's ``Ports``: published bindings, and ``PrivatePort: 0`` rows for ports that are
    only exposed (the 0.6 quirk); None when there are no ports."""
    rows = []
    ports = container.network.get("Ports") or {}
    exposed = set(container.config.get("ExposedPorts") or {})
    for key in sorted(exposed | set(ports)):
        number, _, proto = key.partition("/")
        bindings = ports.get(key)
        if bindings:
            for b in bindings:
                rows.append({"PrivatePort": int(number), "PublicPort": int(b["HostPort"]), "Type": proto,
                             "IP": b.get("HostIp", "")})
        else:
            rows.append({"PrivatePort": 0, "PublicPort": int(number), "Type": proto, "IP": ""})
    return rows or None
