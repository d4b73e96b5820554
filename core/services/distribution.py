"""Pull and push: the selected registry client moving images into and out of the image service.

This is the distribution service (``Services.distribution``) that ``POST /images/create
?fromImage=``, ``POST /images/{name}/push``, ``POST /auth``, ``GET /images/search`` and the
builder's ``FROM`` use. It keeps Docker's rule that one ``name:tag`` is pulled or pushed by one
request at a time ("pull X:tag is already in progress").
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.sdk.errors import Conflict, NotFound
from moorage.core.sdk.hookspecs.registry import AuthConfig, Progress, RegistryClient
from moorage.core.sdk.validation import check_repository, check_tag, check_tag_or_digest
from moorage.core.services.images import ImageService
from moorage.core.services.tags import parse_repository_tag


class Distribution:
    def __init__(self, client: RegistryClient, images: ImageService, hooks: LifecycleHooks) -> None:
        #: the selected registry driver
        self.client = client
        self.images = images
        self.hooks = hooks
        self._busy: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @contextmanager
    def _pool(self, kind: str, key: str):
        with self._lock:
            if (kind, key) in self._busy:
                raise Conflict(f"{kind} {key} is already in progress")
            self._busy.add((kind, key))
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard((kind, key))

    def pull(self, name: str, tag: str | None, auth: AuthConfig | None, progress: Progress) -> list[str]:
        """Pull ``name:tag`` (every tag when ``tag`` is empty, as Docker 0.6 did) into the store."""
        if not tag:
            name, tag = parse_repository_tag(name)
        check_repository(name)
        if tag:
            check_tag_or_digest(tag)
        auth = auth or AuthConfig()
        with self._pool("pull", f"{name}:{tag or '*'}"):
            ids = self.client.pull(name, tag or None, auth, self.images, progress)
        tags = self.images.tags.repository(name) or {}
        for each, image_id in sorted(tags.items()):
            if image_id in ids and (not tag or each == tag):
                self.hooks.image_pulled(name, each, image_id)
        return ids

    def push(self, name: str, tag: str | None, auth: AuthConfig | None, progress: Progress) -> dict[str, str]:
        """Push a repository's tags (or one tag) to its registry; returns tag -> digest."""
        check_repository(name)
        if tag:
            check_tag(tag)
        auth = auth or AuthConfig()
        tags = self.images.tags.repository(name)
        if tags:
            image_ids = {t: i for t, i in tags.items() if not tag or t == tag}
        else:
            image = self.images.lookup(name)
            if image is None:
                raise NotFound(f"No such image: {name}")
            image_ids = {tag or "latest": image.id}
        if not image_ids:
            raise NotFound(f"Tag {tag} not found in repository {name}")
        with self._pool("push", name):
            return self.client.push(name, tag or None, image_ids, auth, self.images, progress)

    def login(self, auth: AuthConfig) -> str:
        return self.client.login(auth)

    def search(self, term: str, auth: AuthConfig | None = None) -> list[dict]:
        return self.client.search(term, auth or AuthConfig())
