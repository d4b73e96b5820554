"""Pushing: the layers of a local chain as gzip blobs (skipped when the registry has them,
mounted from another repository of the same registry when one is known to), then the config
and a Docker schema2 manifest per tag."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from pathlib import Path
from urllib.parse import quote

from moorage.core.sdk.errors import MoorageError, Unavailable
from moorage.core.sdk.hookspecs.registry import Progress, PulledLayer, PushSource
from moorage.drivers.registry.v2 import images
from moorage.drivers.registry.v2.blobs import Meter, compress_layer, upload_blob
from moorage.drivers.registry.v2.sources import BlobRecord, BlobSources
from moorage.drivers.registry.v2.transport import Session

log = logging.getLogger(__name__)


class Pusher:
    """Pushes to one repository through one session; ``sources`` remembers where each layer's
    blob was seen, ``tmp`` holds the compressed layers while they upload."""

    def __init__(self, session: Session, repository: str, sources: BlobSources, tmp: Path,
                 compress_level: int) -> None:
        self.session = session
        self.repository = repository
        self.sources = sources
        self.tmp = tmp
        self.compress_level = compress_level

    def push(self, image_ids: dict[str, str], source: PushSource, progress: Progress) -> dict[str, str]:
        """Push each tag's chain; ``{tag: manifest digest}``."""
        session, repository = self.session, self.repository
        pushed: dict[str, BlobRecord] = {}
        digests = {}
        for each, image_id in sorted(image_ids.items()):
            chain = source.chain(image_id)
            records = [self._push_layer(layer, source, progress, pushed) for layer in chain]
            config = images.push_config(chain, [r.diff_id for r in records])
            config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
            config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
            if not self._blob_exists(config_digest):
                upload_blob(session, repository, config_digest, len(config_bytes),
                            lambda data=config_bytes: _BytesFile(data))
            manifest = {
                "schemaVersion": 2,
                "mediaType": images.DOCKER_MANIFEST,
                "config": {"mediaType": images.DOCKER_CONFIG, "size": len(config_bytes), "digest": config_digest},
                "layers": [{"mediaType": r.media_type, "size": r.size, "digest": r.digest} for r in records],
            }
            body = json.dumps(manifest, indent=3).encode()
            digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
            response = session.request("PUT", f"/v2/{repository}/manifests/{quote(each)}", body=body,
                                       headers={"Content-Type": images.DOCKER_MANIFEST})
            session.check(response, f"manifest {each} of {repository}", ok=(200, 201))
            answered = response.headers.get("docker-content-digest")
            if answered and answered != digest:
                raise Unavailable(f"{session.registry.host} stored manifest {each} as {answered}, "
                                  f"but its digest is {digest}")
            progress({"status": f"{each}: digest: {digest} size: {len(body)}"})
            digests[each] = digest
        return digests

    def _blob_exists(self, digest: str) -> bool:
        session, repository = self.session, self.repository
        response = session.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return False
        session.check(response, f"blob {digest} of {repository}")
        return True

    def _push_layer(self, layer: PulledLayer, source: PushSource, progress: Progress,
                    pushed: dict[str, BlobRecord]) -> BlobRecord:
        """Make the layer's blob exist in the repository: already there, mounted from another
        repository of the registry, or compressed and uploaded."""
        session, repository = self.session, self.repository
        short = layer.id[:12]
        host = session.registry.host
        if layer.id in pushed:
            return pushed[layer.id]
        known = self.sources.get(layer.id)
        if known is not None:
            if self._blob_exists(known.digest):
                progress({"status": f"Image {short} already pushed, skipping"})
                return self._pushed(pushed, layer.id, known, host, repository)
            for src_host, src_repo in reversed(known.sources):
                if src_host == host and src_repo != repository and self._mount(src_repo, known.digest):
                    progress({"status": f"Mounted from {src_repo}", "id": short})
                    return self._pushed(pushed, layer.id, known, host, repository)
        progress({"status": f"Pushing {short}"})
        path = self.tmp / f"push-{uuid.uuid4().hex}.tar.gz"
        try:
            meter = Meter(progress, "Buffering to disk", short, None)

            def chunks():
                for chunk in source.layer_tar(layer.id):
                    meter.add(len(chunk))
                    yield chunk

            blob = compress_layer(chunks(), path, self.compress_level)
            meter.done()
            record = BlobRecord(blob.diff_id, blob.digest, blob.size, images.DOCKER_LAYER_GZIP)
            if self._blob_exists(blob.digest):
                progress({"status": f"Image {short} already pushed, skipping"})
            else:
                upload_blob(session, repository, blob.digest, blob.size, lambda: open(path, "rb"),
                            Meter(progress, "Pushing", short, blob.size))
        finally:
            path.unlink(missing_ok=True)
        return self._pushed(pushed, layer.id, record, host, repository)

    def _pushed(self, pushed: dict[str, BlobRecord], image_id: str, record: BlobRecord, host: str,
                repository: str) -> BlobRecord:
        pushed[image_id] = record
        self.sources.remember(image_id, record, host, repository)
        return record

    def _mount(self, from_repository: str, digest: str) -> bool:
        """Cross-repository mount; False when the registry opened a plain upload instead."""
        session, repository = self.session, self.repository
        session.want(f"repository:{from_repository}:pull")
        session.want(f"repository:{repository}:pull,push")
        try:
            response = session.request("POST", f"/v2/{repository}/blobs/uploads/?mount={digest}&from="
                                               f"{quote(from_repository, safe='')}")
        except MoorageError as exc:  # e.g. no pull right on the other repository
            log.info("mount of %s from %s refused: %s", digest, from_repository, exc)
            return False
        if response.status_code == 201:
            return True
        if response.status_code == 202 and response.headers.get("location"):
            # the registry does not have it there: cancel the upload it opened
            session.request("DELETE", response.headers["location"])
        return False


class _BytesFile:
    """A tiny readable file over bytes (the config blob), for upload_blob's ``open_body``."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self._data) if n < 0 else self._pos + n
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk

    def __enter__(self) -> _BytesFile:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
