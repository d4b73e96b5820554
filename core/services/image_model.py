"""An image's metadata (``Image``: the image JSON of reference §5.1), the times it holds, and
the register of images containers are built on (``ImageUsers``)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from moorage.core.sdk.ids import short_id, validate_id
from moorage.core.services.container_config import CONFIG_FIELDS

#: the directory of registrations and deletions in progress, below ``graph/``
TMP = "_tmp"

#: The zero value of Docker 0.6.5's container ``Config`` (field order as Go serialized it).
EMPTY_CONFIG: dict[str, Any] = CONFIG_FIELDS


def format_time(ns: int | None = None) -> str:
    """RFC 3339 in UTC with Go's RFC3339Nano fraction (trailing zeros trimmed)."""
    ns = time.time_ns() if ns is None else ns
    seconds, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{frac:09d}".rstrip("0")
    return f"{base}.{fraction}Z" if fraction else f"{base}Z"


def parse_time(value: str) -> int:
    """Unix seconds of an RFC 3339 time (any fraction length, ``Z`` or an offset); 0 if unreadable."""
    if not value:
        return 0
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(c for c in rest if c.isdigit())
        text = head + ("." + digits[:6] if digits else "") + rest[len(digits):]
    try:
        return int(datetime.fromisoformat(text).timestamp())
    except ValueError:
        return 0


@dataclass
class Image:
    """One image's metadata (reference §5.1). ``size`` is the layer's own size in bytes."""

    id: str
    created: str
    parent: str = ""
    comment: str = ""
    container: str = ""
    container_config: dict = field(default_factory=lambda: dict(EMPTY_CONFIG))
    docker_version: str = ""
    author: str = ""
    config: dict | None = None
    architecture: str = ""
    size: int = 0

    @property
    def short_id(self) -> str:
        return short_id(self.id)

    @property
    def created_unix(self) -> int:
        return parse_time(self.created)

    def to_json(self, size: int | None = None) -> dict:
        """The image JSON with Docker's omit-when-empty rules; ``Size`` as given (stored: 0)."""
        out: dict[str, Any] = {"id": self.id}
        if self.parent:
            out["parent"] = self.parent
        if self.comment:
            out["comment"] = self.comment
        out["created"] = self.created
        if self.container:
            out["container"] = self.container
        out["container_config"] = self.container_config
        if self.docker_version:
            out["docker_version"] = self.docker_version
        if self.author:
            out["author"] = self.author
        if self.config is not None:
            out["config"] = self.config
        if self.architecture:
            out["architecture"] = self.architecture
        out["Size"] = self.size if size is None else size
        return out

    @classmethod
    def from_json(cls, data: dict, size: int = 0) -> Image:
        image_id = validate_id(str(data.get("id", "")))
        parent = data.get("parent") or ""
        if parent:
            validate_id(parent)
        return cls(id=image_id, created=str(data.get("created") or format_time()), parent=parent,
                   comment=data.get("comment") or "", container=data.get("container") or "",
                   container_config=data.get("container_config") or dict(EMPTY_CONFIG),
                   docker_version=data.get("docker_version") or "", author=data.get("author") or "",
                   config=data.get("config"), architecture=data.get("architecture") or "", size=size)


def _differ(driver):
    # core.layers picks the driver's native Differ or the generic tree-comparing one
    from moorage.core.sdk.layers import differ_for

    return differ_for(driver)


class ImageUsers:
    """Which images containers are built on: all the image service knows of containers (an
    image in use is untagged but not deleted). The container service adds and discards its
    containers' images; both services are given the same instance at start."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, image_id: str) -> None:
        with self._lock:
            self._counts[image_id] += 1

    def discard(self, image_id: str) -> None:
        with self._lock:
            self._counts[image_id] -= 1
            if self._counts[image_id] <= 0:
                del self._counts[image_id]

    def __contains__(self, image_id: str) -> bool:
        with self._lock:
            return image_id in self._counts
