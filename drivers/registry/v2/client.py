"""The ``v2`` registry client: pull, push, login and search over the V2 (OCI distribution) API."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field

from moorage.core.sdk.driver import Bytes
from moorage.core.sdk.errors import Conflict, InvalidParameter, MoorageError, NotFound, Unavailable
from moorage.core.sdk.hookspecs.registry import (
    AuthConfig,
    Progress,
    PulledLayer,
    PullTarget,
    PushSource,
    RegistryClient,
)
from moorage.core.sdk.validation import check_digest, check_tag_or_digest, shown
from moorage.drivers.registry.v2 import images
from moorage.drivers.registry.v2.blobs import (
    Meter,
    compress_layer,
    download_layer,
    fetch_blob,
    serialized,
    upload_blob,
    verify,
)
from moorage.drivers.registry.v2.reference import (
    DOCKER_HUB,
    DOCKER_HUB_INDEX,
    Reference,
    Registry,
    parse_name,
    registry_for_host,
    registry_from_url,
    split_host_term,
)
from moorage.drivers.registry.v2.sources import BlobRecord, BlobSources
from moorage.drivers.registry.v2.transport import Session, TooLarge

log = logging.getLogger(__name__)

#: Docker's index URL, which ``POST /auth`` sends when the client names no server.
HUB_INDEX_URLS = ("https://index.docker.io/v1/", "https://index.docker.io/v1", "index.docker.io")
#: The most tags of one repository, and repositories of a catalog or search, read; and the
#: most pages a registry may split them into.
MAX_LIST_ITEMS = 10_000
MAX_LIST_PAGES = 100


class V2Options(BaseModel):
    """``[registry.v2]``."""

    model_config = ConfigDict(extra="forbid")
    #: hosts (``host:port``) reached over plain http; loopback hosts always are
    insecure_registries: list[str] = []
    #: layers downloaded at once during a pull
    max_concurrent_downloads: int = Field(3, ge=1, le=16)
    #: further tries after a connection error or a 5xx answer, with exponential backoff
    retries: int = Field(4, ge=0, le=10)
    backoff: float = Field(0.5, ge=0)
    timeout: float = Field(60.0, gt=0)
    #: gzip level of pushed layers
    compress_level: int = Field(3, ge=1, le=9)
    #: the most bytes one layer may unpack to (a bytes count or "10g"); a pull beyond fails
    max_layer_size: Bytes = Field(10 << 30, ge=1 << 20)
    #: token realm hosts (``host`` or ``host:port``) besides the registry's own host name that
    #: may receive the username and password (the Hub's ``auth.docker.io`` always may for the Hub)
    token_realms: list[str] = []


class V2Client(RegistryClient):
    """Speaks the registry V2 API (Docker Hub, distribution, any OCI registry) with httpx."""

    name = "v2"
    priority = 10
    Options = V2Options

    def __init__(self, home: Path, options: BaseModel, context: Any = None) -> None:
        super().__init__(home, options, context)
        self.opts: V2Options = options if isinstance(options, V2Options) else V2Options.model_validate(options)
        self.insecure = tuple(self.opts.insecure_registries)
        default = str(self.context.get("default") or "")
        self.default = registry_from_url(default, self.insecure) if default else Registry(DOCKER_HUB, "docker.io")
        self.sources = BlobSources(self.home / "blobsources.json")
        self.tmp = self.home / "tmp"
        # downloads left by a daemon that was killed mid-pull
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _session(self, registry: Registry, auth: AuthConfig) -> Session:
        return Session(registry, auth, retries=self.opts.retries, backoff=self.opts.backoff,
                       timeout=self.opts.timeout, insecure=self.insecure, token_realms=tuple(self.opts.token_realms))

    # -- pull -------------------------------------------------------------------------------
    def pull(self, name: str, tag: str | None, auth: AuthConfig, target: PullTarget,
             progress: Progress) -> list[str]:
        progress = serialized(progress)
        ref = parse_name(name, self.default, self.insecure)
        with self._session(ref.registry, auth) as session:
            repository, tags = self._resolve(session, ref, name, tag)
            progress({"status": f"Pulling repository {name}"})
            pulled = []
            for each in tags:
                top = self._pull_one(session, name, repository, each, target, progress)
                if not each.startswith("sha256:"):
                    target.tag(name, each, top)
                pulled.append(top)
            return pulled

    def _resolve(self, session: Session, ref: Reference, name: str, tag: str | None) -> tuple[str, list[str]]:
        """The repository path that exists (trying the fallbacks) and the tags to pull."""
        if tag is not None and not ref.fallbacks:
            return ref.repository, [tag]
        for repository in (ref.repository, *ref.fallbacks):
            try:
                tags = self._tags(session, repository)
            except NotFound:
                continue
            if tag is not None:
                return repository, [tag]
            if not tags:
                raise NotFound(f"Repository {name} has no tags")
            for each in tags:  # stored as given: a registry's list is input like any other
                try:
                    check_tag_or_digest(each)
                except InvalidParameter:
                    raise InvalidParameter(f"{session.registry.host} lists an invalid tag {shown(each)} in "
                                           f"{repository}") from None
            return repository, sorted(set(tags))
        raise NotFound(f"Repository {name} not found")

    def _tags(self, session: Session, repository: str) -> list[str]:
        return _paged(session, f"/v2/{repository}/tags/list", "tags", f"tags of {repository}")

    def _manifest(self, session: Session, name: str, repository: str, reference: str) -> tuple[dict, str, str]:
        check_tag_or_digest(reference)  # it goes into a URL path
        response = session.request("GET", f"/v2/{repository}/manifests/{reference}",
                                   headers={"Accept": images.ACCEPT})
        if response.status_code == 404:
            raise NotFound(f"Tag {reference} not found in repository {name}")
        session.check(response, f"manifest {reference} of {repository}")
        body = response.content
        digest = reference if reference.startswith("sha256:") else \
            response.headers.get("docker-content-digest") or f"sha256:{hashlib.sha256(body).hexdigest()}"
        verify(body, digest)
        try:
            manifest = json.loads(body)
        except ValueError:
            raise InvalidParameter(f"manifest {reference} of {repository} is not JSON") from None
        return manifest, images.manifest_type(manifest, response.headers.get("content-type", "")), digest

    def _pull_one(self, session: Session, name: str, repository: str, tag: str, target: PullTarget,
                  progress: Progress) -> str:
        manifest, media_type, _ = self._manifest(session, name, repository, tag)
        if media_type in images.INDEX_TYPES:
            chosen = images.select_manifest(manifest)
            manifest, media_type, _ = self._manifest(session, name, repository, chosen["digest"])
        config_desc, layers = images.check_manifest(manifest, media_type)
        config = json.loads(fetch_blob(session, repository, config_desc["digest"], config_desc.get("size")))
        diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        if len(diff_ids) != len(layers) or not layers:
            raise InvalidParameter(f"image {name}:{tag} has {len(layers)} layers but its config lists "
                                   f"{len(diff_ids)} diff_ids")
        for digest in [*diff_ids, *(layer.get("digest", "") for layer in layers)]:
            check_digest(digest)  # blob digests go into URL paths
        ids = images.chain_ids(diff_ids, config_desc["digest"])
        chain = images.image_jsons(config, ids, [0] * len(ids))
        top = ids[-1]
        progress({"status": "Pulling", "progress": f"image ({tag}) from {name}", "id": top[:12]})
        if target.has_image(top):
            progress({"status": "Already exists", "id": top[:12]})
            return top
        # the stored prefix of the chain: has_image vouches for the whole parent chain
        start = 0
        for n in range(len(ids) - 2, -1, -1):
            if target.has_image(ids[n]):
                start = n + 1
                break
        # v0.6's stream spells it this way
        progress({"status": "Pulling", "progress": "dependend layers", "id": top[:12]})
        for layer in chain[:start]:
            progress({"status": "Already exists", "id": layer.id[:12]})
        self._download_and_apply(session, repository, chain[start:], layers[start:], diff_ids[start:],
                                 target, progress)
        return top

    def _download_and_apply(self, session: Session, repository: str, chain: list[PulledLayer],
                            descriptors: list[dict], diff_ids: list[str], target: PullTarget,
                            progress: Progress) -> None:
        """Download concurrently, hand whole images to the target in order, base first."""
        work = self.tmp / uuid.uuid4().hex
        work.mkdir(mode=0o700)
        cancelled = threading.Event()

        def download(n: int):
            layer, desc = chain[n], descriptors[n]
            short = layer.id[:12]
            progress({"status": "Pulling", "progress": "metadata", "id": short})
            progress({"status": "Pulling", "progress": "fs layer", "id": short})
            meter = Meter(progress, "Downloading", short, desc.get("size"))
            result = download_layer(session, repository, desc["digest"], desc.get("size"), diff_ids[n],
                                    work / f"{n}.tar", meter, cancelled, self.opts.max_layer_size)
            progress({"status": "Download", "progress": "complete", "id": short})
            return result

        pool = concurrent.futures.ThreadPoolExecutor(self.opts.max_concurrent_downloads,
                                                     thread_name_prefix="moorage-pull")
        try:
            futures = [pool.submit(download, n) for n in range(len(chain))]
            for n, future in enumerate(futures):
                layer_file = future.result()
                layer = chain[n]
                layer.image_json["Size"] = layer_file.size
                # a concurrent pull of the same image may have stored it meanwhile
                if not target.has_image(layer.id):
                    try:
                        with open(layer_file.path, "rb") as tar:
                            target.add_image(layer, tar)
                    except Conflict:
                        if not target.has_image(layer.id):
                            raise
                layer_file.path.unlink()
                desc = descriptors[n]
                self.sources.remember(layer.id, BlobRecord(diff_ids[n], desc["digest"], int(desc.get("size") or 0),
                                                           desc.get("mediaType") or images.DOCKER_LAYER_GZIP),
                                      session.registry.host, repository)
        finally:
            cancelled.set()
            pool.shutdown(wait=True, cancel_futures=True)
            shutil.rmtree(work, ignore_errors=True)

    # -- push -------------------------------------------------------------------------------
    def push(self, name: str, tag: str | None, image_ids: dict[str, str], auth: AuthConfig,
             source: PushSource, progress: Progress) -> dict[str, str]:
        progress = serialized(progress)
        if not image_ids:
            raise NotFound(f"No such image: {name}" + (f":{tag}" if tag else ""))
        ref = parse_name(name, self.default, self.insecure)
        repository = ref.repository
        progress({"status": f"The push refers to a repository [{name}] (len: {len(image_ids)})"})
        progress({"status": f"Pushing repository {name} ({len(image_ids)} tags)"})
        pushed: dict[str, BlobRecord] = {}
        digests = {}
        with self._session(ref.registry, auth) as session:
            for each, image_id in sorted(image_ids.items()):
                chain = source.chain(image_id)
                records = [self._push_layer(session, repository, layer, source, progress, pushed)
                           for layer in chain]
                config = images.push_config(chain, [r.diff_id for r in records])
                config_bytes = json.dumps(config, separators=(",", ":"), sort_keys=True).encode()
                config_digest = f"sha256:{hashlib.sha256(config_bytes).hexdigest()}"
                if not self._blob_exists(session, repository, config_digest):
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

    def _blob_exists(self, session: Session, repository: str, digest: str) -> bool:
        response = session.request("HEAD", f"/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return False
        session.check(response, f"blob {digest} of {repository}")
        return True

    def _push_layer(self, session: Session, repository: str, layer: PulledLayer, source: PushSource,
                    progress: Progress, pushed: dict[str, BlobRecord]) -> BlobRecord:
        """Make the layer's blob exist in ``repository``: already there, mounted from another
        repository of the registry, or compressed and uploaded."""
        short = layer.id[:12]
        host = session.registry.host
        if layer.id in pushed:
            return pushed[layer.id]
        known = self.sources.get(layer.id)
        if known is not None:
            if self._blob_exists(session, repository, known.digest):
                progress({"status": f"Image {short} already pushed, skipping"})
                return self._pushed(pushed, layer.id, known, host, repository)
            for src_host, src_repo in reversed(known.sources):
                if src_host == host and src_repo != repository and self._mount(session, repository, src_repo,
                                                                               known.digest):
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

            blob = compress_layer(chunks(), path, self.opts.compress_level)
            meter.done()
            record = BlobRecord(blob.diff_id, blob.digest, blob.size, images.DOCKER_LAYER_GZIP)
            if self._blob_exists(session, repository, blob.digest):
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

    def _mount(self, session: Session, repository: str, from_repository: str, digest: str) -> bool:
        """Cross-repository mount; False when the registry opened a plain upload instead."""
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

    # -- login and search -------------------------------------------------------------------
    def login(self, auth: AuthConfig) -> str:
        address = auth.server_address.strip()
        if not address or address in HUB_INDEX_URLS:
            registry = self.default
        else:
            try:  # a client's serveraddress: one that does not parse is a bad request, not a crash
                registry = registry_from_url(address, self.insecure)
                httpx.URL(registry.url)
            except (ValueError, httpx.InvalidURL) as exc:
                raise InvalidParameter(f"Bad parameter: serveraddress {address!r}: {exc}") from None
        with self._session(registry, auth) as session:
            response = session.request("GET", "/v2/")
            session.check(response, f"login to {registry.host}")
        return "Login Succeeded"

    def search(self, term: str, auth: AuthConfig) -> list[dict]:
        host, query = split_host_term(term)
        registry = registry_for_host(host, self.insecure) if host else self.default
        with self._session(registry, auth) as session:
            results = self._search_v1(session, query)
            if results is None:
                results = self._search_catalog(session, query)
        if host:
            for result in results:
                result["name"] = f"{host}/{result['name']}"
        return results

    def _search_v1(self, session: Session, query: str) -> list[dict] | None:
        base = DOCKER_HUB_INDEX if session.registry.is_hub else session.registry.url
        try:
            response = session.request("GET", f"{base}/v1/search?q={quote(query)}")
        except TooLarge:
            raise
        except MoorageError:
            return None
        if response.status_code != 200:
            return None
        try:
            found = response.json().get("results")
        except (ValueError, AttributeError):
            return None
        if not isinstance(found, list):
            return None
        if len(found) > MAX_LIST_ITEMS:
            raise TooLarge(f"{session.registry.host} answered more than {MAX_LIST_ITEMS} search results")
        return [_result(r.get("name", ""), r.get("description") or "", int(r.get("star_count") or 0),
                        bool(r.get("is_official")), bool(r.get("is_trusted") or r.get("is_automated")))
                for r in found]

    def _search_catalog(self, session: Session, query: str) -> list[dict]:
        names = _paged(session, "/v2/_catalog?n=1000", "repositories", "repository catalog")
        needle = query.lower()
        return [_result(n, "", 0, False, False) for n in sorted(names) if needle in n.lower()]


def _result(name: str, description: str, stars: int, official: bool, trusted: bool) -> dict:
    return {"name": name, "description": description, "star_count": stars, "is_official": official,
            "is_trusted": trusted}


def _paged(session: Session, path: str, key: str, what: str) -> list[str]:
    """The strings under ``key`` of every page of a paginated list (``Link: <...>; rel="next"``),
    bounded: each page by the session's answer bound, the whole by ``MAX_LIST_ITEMS`` items and
    ``MAX_LIST_PAGES`` pages."""
    items: list[str] = []
    pages = 0
    while path:
        pages += 1
        if pages > MAX_LIST_PAGES:
            raise TooLarge(f"{what} at {session.registry.host} has more than {MAX_LIST_PAGES} pages")
        response = session.request("GET", path)
        session.check(response, what)
        try:
            page = response.json().get(key) or []
        except (ValueError, AttributeError):
            raise Unavailable(f"{what} at {session.registry.host} is not a JSON object") from None
        if not isinstance(page, list) or not all(isinstance(item, str) for item in page):
            raise Unavailable(f"{what} at {session.registry.host}: {key} is not a list of strings")
        items += page
        if len(items) > MAX_LIST_ITEMS:
            raise TooLarge(f"{what} at {session.registry.host} has more than {MAX_LIST_ITEMS} entries")
        path = _next_link(response)
    return items


def _next_link(response) -> str | None:
    link = response.headers.get("link", "")
    if 'rel="next"' not in link:
        return None
    return link.split(";")[0].strip().strip("<>") or None


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
