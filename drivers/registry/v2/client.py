"""The ``v2`` registry client: pull, push, login and search over the V2 (OCI distribution) API."""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import shutil
import threading
import uuid

import httpx
from pydantic import BaseModel, ConfigDict, Field

from moorage.core.sdk.driver import Bytes, DriverContext
from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.sdk.hookspecs.registry import (
    AuthConfig,
    Progress,
    PulledLayer,
    PullTarget,
    PushSource,
    RegistryClient,
    RegistrySettings,
)
from moorage.core.sdk.validation import check_digest, check_tag_or_digest, shown
from moorage.drivers.registry.v2 import images
from moorage.drivers.registry.v2.blobs import (
    Meter,
    download_layer,
    fetch_blob,
    serialized,
    verify,
)
from moorage.drivers.registry.v2.pushing import Pusher
from moorage.drivers.registry.v2.reference import (
    DOCKER_HUB,
    Reference,
    Registry,
    parse_name,
    registry_for_host,
    registry_from_url,
    split_host_term,
)
from moorage.drivers.registry.v2.search import paged, search
from moorage.drivers.registry.v2.sources import BlobRecord, BlobSources
from moorage.drivers.registry.v2.transport import Session, user_agent

log = logging.getLogger(__name__)

#: Docker's index URL, which ``POST /auth`` sends when the client names no server.
HUB_INDEX_URLS = ("https://index.docker.io/v1/", "https://index.docker.io/v1", "index.docker.io")


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

    def __init__(self, context: DriverContext[V2Options, RegistrySettings]) -> None:
        super().__init__(context)
        self.opts = context.options
        self.agent = user_agent(context.daemon.version)
        self.insecure = tuple(self.opts.insecure_registries)
        default = context.family.default
        self.default = registry_from_url(default, self.insecure) if default else Registry(DOCKER_HUB, "docker.io")
        self.sources = BlobSources(self.home / "blobsources.json")
        self.tmp = self.home / "tmp"
        # downloads left by a daemon that was killed mid-pull
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)

    def _session(self, registry: Registry, auth: AuthConfig) -> Session:
        return Session(registry, auth, retries=self.opts.retries, backoff=self.opts.backoff,
                       timeout=self.opts.timeout, insecure=self.insecure, token_realms=tuple(self.opts.token_realms),
                       agent=self.agent)

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
        return paged(session, f"/v2/{repository}/tags/list", "tags", f"tags of {repository}")

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
        progress({"status": f"The push refers to a repository [{name}] (len: {len(image_ids)})"})
        progress({"status": f"Pushing repository {name} ({len(image_ids)} tags)"})
        with self._session(ref.registry, auth) as session:
            pusher = Pusher(session, ref.repository, self.sources, self.tmp, self.opts.compress_level)
            return pusher.push(image_ids, source, progress)

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
            results = search(session, query)
        if host:
            for result in results:
                result["name"] = f"{host}/{result['name']}"
        return results
