"""A directory-backed image store for registry client tests: ``PullTarget`` and ``PushSource``
without moorage's real image store."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

from moorage.core.sdk.errors import NotFound
from moorage.core.sdk.hookspecs.registry import PulledLayer


class DirStore:
    """PullTarget and PushSource over directories: ``<root>/<id>/{json,layer.tar,layer/}``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.tags: dict[tuple[str, str], str] = {}
        self.added: list[str] = []

    def has_image(self, image_id: str) -> bool:
        return (self.root / image_id / "json").exists()

    def add_image(self, layer: PulledLayer, tar) -> None:
        assert not self.has_image(layer.id), f"{layer.id} added twice"
        assert layer.parent is None or self.has_image(layer.parent), "parent must be stored first"
        assert layer.image_json["id"] == layer.id and layer.image_json.get("parent") == layer.parent
        tmp = self.root / f".tmp-{layer.id}"
        try:
            tmp.mkdir()
            with open(tmp / "layer.tar", "wb") as out:
                shutil.copyfileobj(tar, out)
            with tarfile.open(tmp / "layer.tar") as archive:
                archive.extractall(tmp / "layer", filter="tar")
            (tmp / "json").write_text(json.dumps(layer.image_json))
            os.rename(tmp, self.root / layer.id)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.added.append(layer.id)

    def tag(self, repository: str, tag: str, image_id: str) -> None:
        assert self.has_image(image_id)
        self.tags[(repository, tag)] = image_id

    def image_json(self, image_id: str) -> dict:
        return json.loads((self.root / image_id / "json").read_text())

    def chain(self, image_id: str) -> list[PulledLayer]:
        out = []
        current: str | None = image_id
        while current:
            if not self.has_image(current):
                raise NotFound(f"No such image: {current}")
            data = self.image_json(current)
            out.append(PulledLayer(current, data.get("parent"), data))
            current = data.get("parent")
        return out[::-1]

    def layer_tar(self, image_id: str):
        with open(self.root / image_id / "layer.tar", "rb") as f:
            while chunk := f.read(1 << 16):
                yield chunk

    def read(self, image_id: str, path: str) -> bytes:
        """A file as the image's whole chain shows it (upper layers win)."""
        for layer in reversed(self.chain(image_id)):
            candidate = self.root / layer.id / "layer" / path
            if candidate.exists():
                return candidate.read_bytes()
        raise FileNotFoundError(path)

    def complete(self) -> bool:
        """No half-stored image: only finished directories, each with its parent."""
        for entry in self.root.iterdir():
            if entry.name.startswith(".tmp-"):
                return False
            data = self.image_json(entry.name)
            if data.get("parent") and not self.has_image(data["parent"]):
                return False
        return True


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Progress:
    """Collects progress messages."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def __call__(self, message: dict) -> None:
        self.messages.append(dict(message))

    def statuses(self) -> list[str]:
        return [m.get("status", "") for m in self.messages]


