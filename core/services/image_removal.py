"""Deleting images (``DELETE /images/{name}``, reference §5.6): untagging, then removing what
is left untagged, children first and parents after; and pinning an image against deletion
while a container is being made on it."""

from __future__ import annotations

import os
import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from moorage.core.sdk.ids import short_id
from moorage.core.sdk.store import fsync_dir
from moorage.core.services.image_model import Image, ImageUsers
from moorage.core.services.tags import TagStore, parse_repository_tag


class ImageRemoval:
    """How ``ImageService`` deletes its images (mixed into it: it works on the service's
    store, tags, driver and lock)."""

    tags: TagStore
    users: ImageUsers
    _images: dict[str, Image]
    _pinned: Counter[str]
    _lock: threading.RLock

    @contextmanager
    def pinned(self, image_id: str) -> Iterator[None]:
        """Keep ``image_id`` from being deleted meanwhile (a container being made on it is not
        in ``users`` yet)."""
        with self._lock:
            self._pinned[image_id] += 1
        try:
            yield
        finally:
            with self._lock:
                self._pinned[image_id] -= 1
                if self._pinned[image_id] <= 0:
                    del self._pinned[image_id]

    # -- deleting -----------------------------------------------------------------------------
    def delete(self, name: str) -> list[dict]:
        """``DELETE /images/{name}`` (reference §5.6): untag, then delete what is left untagged.

        Returns ``[{"Untagged": short}, {"Deleted": short}, ...]``; an empty list means nothing
        was removed (the caller answers 409).
        """
        image = self.resolve(name)
        out: list[dict] = []
        with self._lock:
            repo, tag = "", ""
            if name not in image.id:
                repo, tag = parse_repository_tag(name)
            tags: list[str] = []
            if not repo:
                for tag_repo, tag_name in self.tags.tags_of(image.id):
                    if repo and tag_repo != repo:
                        return []  # tagged in several repositories: refuse (409)
                    repo = tag_repo
                    tags.append(tag_name)
            else:
                tags.append(tag)
            for tag_name in tags:
                if self.tags.delete(repo, tag_name):
                    out.append({"Untagged": image.short_id})
                    self._publish("untag", image.short_id)
            if not self.tags.tags_of(image.id):
                if self._delete_with_children(image.id, out):
                    self._delete_parents(image, out)
        return out

    def _delete_with_children(self, image_id: str, out: list[dict]) -> bool:
        """Delete ``image_id`` and its untagged descendants; False if a tag (or a registration
        in progress) keeps it."""
        if self.tags.tags_of(image_id) or self._pinned.get(image_id) or image_id in self.users:
            return False
        kept = False
        for child in self.children().get(image_id, []):
            if not self._delete_with_children(child, out):
                kept = True
        if kept:
            return False
        self._remove(image_id)
        out.append({"Deleted": short_id(image_id)})
        self._publish("delete", short_id(image_id))
        return True

    def _delete_parents(self, image: Image, out: list[dict]) -> None:
        parent = self._images.get(image.parent) if image.parent else None
        while parent is not None:
            if not self._delete_with_children(parent.id, out):
                return
            parent = self._images.get(parent.parent) if parent.parent else None

    def _remove(self, image_id: str) -> None:
        """Remove one childless image: metadata first (atomically), then its layer."""
        self.tags.delete_all(image_id)
        trash = self.tmp_dir / f"deleting-{image_id}"
        os.rename(self.graph_dir / image_id, trash)
        fsync_dir(self.graph_dir)
        image = self._images.pop(image_id)
        try:
            self.init_layers.remove(image_id)  # no container uses it (``users``)
            if self.driver.exists(image_id):
                self.driver.remove(image_id)
        except BaseException:  # the driver refused (a layer still built upon): the image stays
            os.rename(trash, self.graph_dir / image_id)
            fsync_dir(self.graph_dir)
            self._images[image_id] = image
            raise
        shutil.rmtree(trash, ignore_errors=True)
        self.hooks.image_deleted(image_id)

    def _publish(self, status: str, image_id: str) -> None:
        if self.events is not None:
            self.events.publish(status, image_id, type="image")
