"""The image service: image metadata, layers through the graph driver, tags, lookup, deletion.

On disk (Docker 0.7's layout, with the driver's layers kept by the driver itself)::

    <root>/graph/<id>/json          the image JSON (reference §5.1), "Size" stored as 0
    <root>/graph/<id>/layersize     decimal bytes of the layer
    <root>/graph/_tmp/              registrations and deletions in progress
    <root>/repositories-<driver>    the tag store (``moorage.core.services.tags``)

Crash safety. Registering an image first drops a marker ``_tmp/<id>.pending``, then creates
and fills the driver layer, then builds ``json`` + ``layersize`` in a fresh ``_tmp`` directory
and renames it to ``graph/<id>``: the image exists from that rename on, whole. Deleting renames
``graph/<id>`` to ``_tmp/deleting-<id>`` first, so the image is gone at once, then removes the
layer. At start, a pending or deleting id without ``graph/<id>`` gets its driver layer removed
and ``_tmp`` is emptied: a daemon killed at any point restarts with every image intact and no
half-written layer.

The service implements the registry driver's ``PullTarget`` and ``PushSource`` protocols
(``has_image``/``add_image``/``tag`` and ``chain``/``layer_tar``).
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from moorage.core.kernel.lifecycle import LifecycleHooks, no_hooks
from moorage.core.sdk.archive import open_decompressed
from moorage.core.sdk.errors import Conflict, InvalidParameter, MoorageError, NotFound
from moorage.core.sdk.hookspecs.registry import PulledLayer
from moorage.core.sdk.ids import is_id, new_id, short_id, validate_id
from moorage.core.sdk.store import ensure_dir, fsync_dir, read_json, write_json
from moorage.core.services.events import EventBus
from moorage.core.services.image_model import (  # noqa: F401  (importable from here, as before)
    EMPTY_CONFIG,
    TMP,
    Image,
    ImageUsers,
    _differ,
    format_time,
    parse_time,
)
from moorage.core.services.image_removal import ImageRemoval
from moorage.core.services.image_views import ImageViews, glob_match  # noqa: F401
from moorage.core.services.init_layers import InitLayers
from moorage.core.services.tags import (
    DEFAULT_TAG,
    TagStore,
    parse_repository_tag,
    validate_repo_name,
    validate_tag_name,
)

log = logging.getLogger(__name__)


class ImageService(ImageViews, ImageRemoval):
    """Images of one daemon root with one graph driver. Thread-safe; methods block.

    ``len(service)`` is the image count shown by ``/info``.
    """

    def __init__(self, root: Path, driver, version: str = "", hooks: LifecycleHooks | None = None,
                 events: EventBus | None = None, users: ImageUsers | None = None) -> None:
        self.root = Path(root)
        self.graph_dir = ensure_dir(self.root / "graph")
        self.tmp_dir = ensure_dir(self.graph_dir / TMP)
        self.driver = driver
        self.version = version
        self.hooks = hooks or no_hooks()
        self.events = events
        #: the images containers are built on (``ImageUsers``)
        self.users = users or ImageUsers()
        self.tags = TagStore(self.root / f"repositories-{driver.name}")
        #: the containers' shared init layers, children of the images' layers
        self.init_layers = InitLayers(self.graph_dir / "_init", driver)
        self._lock = threading.RLock()
        self._images: dict[str, Image] = {}
        #: parents of registrations in progress: deleting them now would orphan the new image
        self._pinned: Counter[str] = Counter()
        #: ids being registered: a second registration of the same id must not touch its layer
        self._registering: set[str] = set()
        self._recover()
        self._load()

    # -- start --------------------------------------------------------------------------------
    def _recover(self) -> None:
        """Undo what a killed daemon left in ``_tmp``: half-made layers and half-done deletions."""
        for entry in sorted(self.tmp_dir.iterdir()):
            name = entry.name
            layer_id = ""
            if name.endswith(".pending"):
                layer_id = name[: -len(".pending")]
            elif name.startswith("deleting-"):
                layer_id = name[len("deleting-"):]
            if is_id(layer_id) and not (self.graph_dir / layer_id).exists() and self.driver.exists(layer_id):
                log.info("removing the layer of interrupted registration or deletion %s", short_id(layer_id))
                try:
                    self.init_layers.remove(layer_id)
                    self.driver.remove(layer_id)
                except MoorageError as exc:  # an orphan layer must not keep the daemon from starting
                    log.warning("could not remove the layer %s: %s", short_id(layer_id), exc)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        fsync_dir(self.tmp_dir)

    def _load(self) -> None:
        for entry in self.graph_dir.iterdir():
            if not is_id(entry.name):
                continue
            data = read_json(entry / "json")
            if not isinstance(data, dict) or data.get("id") != entry.name:
                log.warning("skipping %s: its json is missing or names another id", entry)
                continue
            try:
                size = int((entry / "layersize").read_text().strip())
            except (OSError, ValueError):
                size = 0
            try:
                self._images[entry.name] = Image.from_json(data, size)
            except InvalidParameter as exc:
                log.warning("skipping %s: %s", entry, exc)
        # tags pointing at images that are gone (a store copied between roots) are dropped
        for image_id in set(self.tags.by_id()) - set(self._images):
            self.tags.delete_all(image_id)

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return len(self._images)

    def exists(self, image_id: str) -> bool:
        with self._lock:
            return image_id in self._images

    def get(self, image_id: str) -> Image:
        with self._lock:
            try:
                return self._images[image_id]
            except KeyError:
                raise NotFound(f"No such image: {image_id}") from None

    def all(self) -> list[Image]:
        with self._lock:
            return list(self._images.values())

    def children(self) -> dict[str, list[str]]:
        """``{parent id: [child ids]}``."""
        out: dict[str, list[str]] = {}
        for image in self.all():
            if image.parent:
                out.setdefault(image.parent, []).append(image.id)
        return out

    def virtual_size(self, image: Image) -> int:
        total = 0
        current: Image | None = image
        while current is not None:
            total += current.size
            current = self._images.get(current.parent) if current.parent else None
        return total

    def ancestry(self, image_id: str) -> list[Image]:
        """The image, then its parents down to the base."""
        out = []
        current: Image | None = self.get(image_id)
        while current is not None:
            out.append(current)
            current = self._images.get(current.parent) if current.parent else None
        return out

    def _id_prefix(self, prefix: str) -> str | None:
        with self._lock:
            if prefix in self._images:
                return prefix
            found = [i for i in self._images if i.startswith(prefix)] if prefix else []
        return found[0] if len(found) == 1 else None

    def lookup(self, name: str) -> Image | None:
        """Resolve ``name`` (reference §2.1): an id prefix, else ``repo[:tag]`` (tag default
        ``latest``), else the tag taken as a prefix of the ids held in that repository. An
        ambiguous prefix resolves to nothing."""
        found = self._id_prefix(name)
        if found is None:
            repo, tag = parse_repository_tag(name)
            tags = self.tags.repository(repo)
            if tags is None:
                return None
            tag = tag or DEFAULT_TAG
            if tag in tags:
                found = tags[tag]
            else:
                matches = {i for i in tags.values() if i.startswith(tag)}
                found = matches.pop() if len(matches) == 1 else None
        with self._lock:
            return self._images.get(found) if found else None

    def resolve(self, name: str, message: str = "No such image: {name}") -> Image:
        image = self.lookup(name)
        if image is None:
            raise NotFound(message.format(name=name))
        return image

    # -- registering --------------------------------------------------------------------------
    def register(self, image: Image, layer: BinaryIO) -> Image:
        """Store ``image`` with the uncompressed layer tar ``layer`` (reference §7.1).

        Raises ``Conflict`` for an id already stored, ``NotFound`` for a missing parent and
        whatever applying the layer raises (``InvalidParameter`` for a corrupt or hostile tar);
        on any failure nothing of the image is left behind.
        """
        image_id = validate_id(image.id)
        with self._lock:
            if image_id in self._images or image_id in self._registering:
                raise Conflict(f"Conflict, image {image_id} already exists")
            self._registering.add(image_id)
            if image.parent and image.parent not in self._images:
                raise NotFound(f"No such image: {image.parent} (the parent of {short_id(image_id)})")
            if image.parent:
                self._pinned[image.parent] += 1
        pending = self.tmp_dir / f"{image_id}.pending"
        build = self.tmp_dir / f"build-{image_id}"
        try:
            pending.touch()
            fsync_dir(self.tmp_dir)
            if self.driver.exists(image_id):  # a stale layer of an earlier interrupted attempt
                self.driver.remove(image_id)
            self.driver.create(image_id, image.parent or None)
            try:
                size = _differ(self.driver).apply_diff(image_id, image.parent or None, layer)
                image.size = int(size)
                build.mkdir(mode=0o700)
                write_json(build / "json", image.to_json(size=0))
                (build / "layersize").write_text(str(image.size))
                fsync_dir(build)
                with self._lock:
                    os.rename(build, self.graph_dir / image_id)
                    fsync_dir(self.graph_dir)
                    self._images[image_id] = image
            except BaseException:
                shutil.rmtree(build, ignore_errors=True)
                try:
                    self.driver.remove(image_id)
                except Exception:
                    log.exception("could not remove the layer of failed registration %s", short_id(image_id))
                raise
        finally:
            pending.unlink(missing_ok=True)
            with self._lock:
                self._registering.discard(image_id)
            if image.parent:
                with self._lock:
                    self._pinned[image.parent] -= 1
                    if self._pinned[image.parent] <= 0:
                        del self._pinned[image.parent]
        return image

    def new_image(self, parent: str = "", comment: str = "", container: str = "",
                  container_config: dict | None = None, config: dict | None = None, author: str = "") -> Image:
        """Metadata for an image made here (import, commit): a fresh id, now, this machine."""
        return Image(id=new_id(), created=format_time(), parent=parent, comment=comment, container=container,
                     container_config=container_config if container_config is not None else dict(EMPTY_CONFIG),
                     docker_version=self.version, author=author, config=config,
                     architecture=platform.machine() or "x86_64")

    def import_tar(self, stream: BinaryIO, source: str, repo: str = "", tag: str = "") -> Image:
        """Import a (possibly compressed) tar as a new base image, tagged ``repo:tag`` if ``repo``."""
        if repo:
            validate_repo_name(repo)
            validate_tag_name(tag or DEFAULT_TAG)
        image = self.register(self.new_image(comment=f"Imported from {source}"), open_decompressed(stream))
        while stream.read(1 << 20):  # padding after the tar's end blocks: read to EOF, as Docker did
            pass
        if repo:
            self.tag(repo, tag, image.id)
        return image

    # -- tags ---------------------------------------------------------------------------------
    def tag_image(self, name: str, repo: str, tag: str = "", force: bool = False) -> None:
        """``POST /images/{name}/tag``. An existing tag is always overwritten: Docker 0.6's
        ``force`` check could never trigger, and clients rely on re-tagging (``force`` is
        accepted and ignored)."""
        with self._lock:  # not while a deletion of the image is under way
            image = self.resolve(name, "Image does not exist: {name}")
            validate_repo_name(repo)
            validate_tag_name(tag or DEFAULT_TAG)
            self.tags.set(repo, tag or DEFAULT_TAG, image.id)

    # PullTarget ------------------------------------------------------------------------------
    def has_image(self, image_id: str) -> bool:
        return self.exists(image_id)

    def add_image(self, layer: PulledLayer, tar: BinaryIO) -> None:
        data = dict(layer.image_json)
        data["id"] = layer.id
        if layer.parent:
            data["parent"] = layer.parent
        else:
            data.pop("parent", None)
        # the protocol says uncompressed; a compressed blob is recognised all the same
        self.register(Image.from_json(data), open_decompressed(tar))

    def tag(self, repository: str, tag: str, image_id: str) -> None:
        with self._lock:
            self.get(image_id)
            self.tags.set(repository, tag or DEFAULT_TAG, image_id)

    # PushSource ------------------------------------------------------------------------------
    def chain(self, image_id: str) -> list[PulledLayer]:
        return [PulledLayer(id=i.id, parent=i.parent or None, image_json=i.to_json())
                for i in reversed(self.ancestry(image_id))]

    def layer_tar(self, image_id: str) -> Iterator[bytes]:
        image = self.get(image_id)
        return _differ(self.driver).diff(image.id, image.parent or None)
