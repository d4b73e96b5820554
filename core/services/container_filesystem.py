"""Operations on a container's filesystem layer: its changes, export, copy, and a commit of it
into a new image (and ``insert``, a commit of one added file)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from moorage.core.sdk.archive import Chunks, IterStream, tree_tar, tree_tar_in_root, write_file_in_root
from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.sdk.layers import differ_for
from moorage.core.sdk.validation import check_container_path, clean_path
from moorage.core.services.container_config import CONFIG_FIELDS, normalize_config
from moorage.core.services.tags import DEFAULT_TAG, validate_repo_name, validate_tag_name

if TYPE_CHECKING:
    from moorage.core.services.containers import ContainerService


class ContainerFilesystem:
    """Works on the container service's records and graph driver; holds nothing (made per
    request)."""

    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers

    def changes(self, name: str) -> list[dict] | None:
        container = self.containers.get(name)
        changes = differ_for(self.containers.graph).changes(container.id, container.init_layer)
        return [{"Path": c.path, "Kind": int(c.kind)} for c in changes] or None

    def export(self, name: str) -> Iterator[bytes]:
        """An uncompressed tar of the container's filesystem, entries under ``./``."""
        container = self.containers.get(name)
        rootfs = self.containers.graph.get(container.id)
        self.containers.publish("export", container)
        return Chunks(tree_tar(rootfs, "."), lambda: self.containers.graph.put(container.id))

    def copy(self, name: str, resource: str) -> Iterator[bytes]:
        """A tar of ``resource`` (and what is below it) named by its basename. The path is
        resolved by the kernel inside the container's root (``..`` and absolute symlinks
        stay in it), and the walk never follows a symlink."""
        container = self.containers.get(name)
        if not resource:
            raise InvalidParameter("Resource cannot be empty")
        check_container_path(resource, "Resource")
        rootfs = self.containers.graph.get(container.id)
        try:
            return tree_tar_in_root(rootfs, resource, done=lambda: self.containers.graph.put(container.id))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"No such file or directory: {resource}") from None

    def commit(self, name: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
               config: Any = None, null_config: bool = False) -> str:
        """A new image from the container's changes; ``config`` becomes the image config as sent
        (an all-zero Config when absent: no merging, reference §6.4; ``null_config`` stores none,
        as insert did). Returns the full id."""
        container = self.containers.get(name)
        if repo:  # refused before anything is stored
            validate_repo_name(repo)
            validate_tag_name(tag or DEFAULT_TAG)
        image_config = None if null_config else normalize_config(config).to_api() if config else dict(CONFIG_FIELDS)
        image = self.containers.images.new_image(parent=container.image, comment=comment, container=container.id,
                                                 container_config=container.config.to_api(), config=image_config,
                                                 author=author)
        diff = differ_for(self.containers.graph).diff(container.id, container.init_layer)
        self.containers.images.register(image, IterStream(diff))
        if repo:
            self.containers.images.tag(repo, tag or "latest", image.id)
        return image.id

    def insert(self, image_name: str, url: str, path: str, content: BinaryIO) -> str:
        """``POST /images/{name}/insert``: a new image holding ``content`` at ``path`` on top of
        the image, committed with no tag and a null config (reference §5.6). An existing path
        is refused (0.6.6). Returns the full new id; nothing is left behind on failure."""
        path = clean_path(path, "path")
        if not path.startswith("/") or path == "/":
            raise InvalidParameter(f"Bad parameter: path must be an absolute file path, not {path!r}")
        container, _ = self.containers.create({"Image": image_name, "Cmd": ["echo", "insert", url, path]})
        try:
            rootfs = self.containers.graph.get(container.id)
            try:
                write_file_in_root(rootfs, path, content, 0o600)  # the mode Docker gave downloads
            finally:
                self.containers.graph.put(container.id)
            return self.commit(container.id, null_config=True)
        finally:
            self.containers.remove(container.id)

