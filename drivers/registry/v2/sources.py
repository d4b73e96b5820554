"""What the client remembers about blobs: for a moorage image id, the registry blob that holds
its layer and where it was seen, so that a push can skip or mount it instead of compressing
and uploading it again. No credentials are kept."""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

from moorage.core.sdk.store import read_json, write_json

#: Repositories remembered per blob; older ones are forgotten first.
MAX_SOURCES = 8


@dataclass
class BlobRecord:
    """A layer blob: ``digest``/``size``/``media_type`` as a manifest names it, ``diff_id`` of
    its uncompressed tar, and ``sources`` as ``[registry host, repository]`` pairs."""

    diff_id: str
    digest: str
    size: int
    media_type: str
    sources: list[list[str]] = field(default_factory=list)


class BlobSources:
    """A JSON file ``image id -> BlobRecord`` in the driver's home, safe for concurrent use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def get(self, image_id: str) -> BlobRecord | None:
        with self._lock:
            raw = (read_json(self.path, {}) or {}).get(image_id)
        return BlobRecord(**raw) if raw else None

    def remember(self, image_id: str, record: BlobRecord, host: str, repository: str) -> None:
        with self._lock:
            data = read_json(self.path, {}) or {}
            old = data.get(image_id)
            sources = old["sources"] if old and old["digest"] == record.digest else []
            sources = [s for s in sources if s != [host, repository]] + [[host, repository]]
            record = BlobRecord(record.diff_id, record.digest, record.size, record.media_type,
                                sources[-MAX_SOURCES:])
            data[image_id] = asdict(record)
            write_json(self.path, data)
