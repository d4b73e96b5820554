"""Registry clients: fetching images from and sending them to image registries.

Vocabulary. A *reference* names an image in a registry: ``[host[:port]/]repo[:tag|@digest]``.
A first component containing ``.`` or ``:``, or equal to ``localhost``, is a registry host;
a name without one goes to the *default registry*: the family-wide config key
``[registry] default`` (a URL such as ``http://127.0.0.1:5000``; the daemon flag
``--registry-mirror URL`` sets it), which the driver receives as ``context.family.default``
(``RegistrySettings``), and Docker Hub when it is unset. The client speaks the registry's protocol; core owns the local
image store. Pulling hands every layer, in order from the base, to a ``PullTarget`` that core
provides; pushing reads local layers from a ``PushSource``. Progress goes to a ``Progress``
callback as the v1.6 stream's messages (§5.4 of the behaviour reference).

Images and ids. A pulled image becomes a *chain* of moorage images, one per layer, each the
parent of the next; the top one carries the image config. Ids are 64 lowercase hex digits
derived from content only (the layer's uncompressed digest, the parent id, and for the top
image the config digest), so pulling the same image twice, from any registry or repository,
gives the same ids and downloads nothing the second time.

Flow of a pull, as core drives it::

    ids = client.pull("localhost:5000/library/busybox", "latest", auth, target, progress)
    #   target.has_image(id)?  -> skip what is stored
    #   target.add_image(layer, tar)  -> base first, one whole image at a time
    #   target.tag("localhost:5000/library/busybox", "latest", ids[0])

A minimal client::

    class MyClient(RegistryClient):
        name = "mine"
        def pull(self, name, tag, auth, target, progress): ...
        def push(self, name, tag, image_ids, auth, source, progress): ...
        def login(self, auth): ...
        def search(self, term, auth): ...

    @hookimpl
    def moorage_registry_register():
        return [MyClient]
"""

from __future__ import annotations

import abc
import base64
import binascii
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, ClassVar, Protocol

from moorage.core.sdk.driver import Driver, FamilySettings
from moorage.core.sdk.hookspecs import hookspec

#: The v1.6 ``Config`` (Docker 0.6.5's create Config, §2.3 of the behaviour reference), in Go's
#: field order, with zero values: the shape of an image JSON's ``config`` and
#: ``container_config`` (see ``PulledLayer``). Copy it before changing it.
V16_CONFIG_FIELDS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "Memory": 0, "MemorySwap": 0, "CpuShares": 0,
    "AttachStdin": False, "AttachStdout": False, "AttachStderr": False, "PortSpecs": None,
    "ExposedPorts": None, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Dns": None, "Image": "", "Volumes": None, "VolumesFrom": "", "WorkingDir": "", "Entrypoint": None,
    "NetworkDisabled": False, "Privileged": False,
}


class RegistrySettings(FamilySettings):
    """The ``[registry]`` table's family-wide keys."""

    #: the default registry's URL (``--registry-mirror``); empty: Docker Hub
    default: str = ""


@dataclass(frozen=True)
class AuthConfig:
    """Credentials from ``X-Registry-Auth`` or ``POST /auth``. Never logged or stored.

    Empty ``username`` means anonymous. ``server_address`` names the registry ``login``
    checks (a host, ``host:port`` or URL; empty or Docker's index URL means the default
    registry); pull and push use the registry of the image name instead.
    """

    username: str = ""
    password: str = ""
    email: str = ""
    server_address: str = ""

    def __repr__(self) -> str:  # keep passwords out of logs and tracebacks
        return f"AuthConfig(username={self.username!r}, server_address={self.server_address!r})"

    @classmethod
    def from_json(cls, data: object) -> AuthConfig:
        """From the AuthConfig JSON object (``username``, ``password``, ``email``,
        ``serveraddress``; keys in any case, as Go decoded them). Anything else is anonymous."""
        if not isinstance(data, dict):
            return cls()
        lower = {str(k).lower(): v for k, v in data.items()}
        fields = {"username": "username", "password": "password", "email": "email",
                  "server_address": "serveraddress"}
        return cls(**{name: str(lower.get(key) or "") for name, key in fields.items()})

    @classmethod
    def from_header(cls, value: str | None) -> AuthConfig:
        """From an ``X-Registry-Auth`` header: base64 (URL or standard alphabet, padding
        optional) of the JSON object. A value that does not decode counts as anonymous."""
        if not value:
            return cls()
        text = value.strip()
        try:
            raw = base64.urlsafe_b64decode(text.replace("+", "-").replace("/", "_") + "=" * (-len(text) % 4))
            return cls.from_json(json.loads(raw))
        except (ValueError, binascii.Error):
            return cls()


@dataclass
class PulledLayer:
    """One image of a chain: its id, its parent's id (None for the base) and its image JSON.

    ``image_json`` has the v1.6 image keys (§5.1): ``id``, ``parent`` (absent for the base),
    ``created`` (RFC 3339), ``container_config`` and, on the top image, ``config`` (both in
    the v1.6 Config shape with Go field names, ``V16_CONFIG_FIELDS``: ``Cmd``, ``Env``,
    ``Entrypoint``, ``WorkingDir``, ``User``, ``ExposedPorts``, ``Volumes``...), ``docker_version``,
    ``author``, ``architecture`` (``x86_64`` for amd64), ``os`` and ``Size`` (the
    uncompressed layer tar's size; the store may recompute it).
    """

    id: str
    parent: str | None
    image_json: dict = field(default_factory=dict)


class PullTarget(Protocol):
    """Core's side of a pull. Called from the thread that called ``pull``, never concurrently."""

    def has_image(self, image_id: str) -> bool:
        """Whether this image (and so its whole parent chain) is already stored."""

    def add_image(self, layer: PulledLayer, tar: BinaryIO) -> None:
        """Store an image whose parent is already stored.

        ``tar`` is a seekable binary file holding the uncompressed layer tar, already verified
        against its digests. If this raises, nothing of the image may be left stored. Raises
        ``Conflict`` if ``layer.id`` is already stored (a concurrent pull stored it first).
        """

    def tag(self, repository: str, tag: str, image_id: str) -> None:
        """Point ``repository:tag`` at a stored image (overwriting, as v1.6 does)."""


class PushSource(Protocol):
    """Core's side of a push."""

    def chain(self, image_id: str) -> list[PulledLayer]:
        """The image and its ancestors, base first. Raises ``NotFound`` for an unknown id."""

    def layer_tar(self, image_id: str) -> Iterator[bytes]:
        """The image's layer as an uncompressed tar, in chunks."""


#: ``progress(message)`` with a v1.6 progress object, keys in the order ``status``,
#: ``progress``, ``id`` (each omitted when empty), e.g. ``{"status": "Downloading",
#: "progress": "  1.024 MB/10.24 MB (10%)", "id": "<12 hex>"}``. A client calls it from one
#: thread at a time, but not necessarily the calling thread.
Progress = Callable[[dict], None]


class RegistryClient(Driver, abc.ABC):
    """Talks to registries. Methods block and are called from core's worker threads; a client
    may use threads of its own (concurrent downloads) and must be safe for concurrent calls.

    ``context.family.default`` is the default registry URL (empty: Docker Hub).
    Failures: network errors and 5xx answers (after the client's retries) and blobs that do
    not match their digest raise ``Unavailable``; refused or missing credentials
    ``Unauthorized``; a missing repository or tag ``NotFound``; a malformed name or an image
    the client cannot handle (unknown manifest type, no manifest for this platform)
    ``InvalidParameter``.
    """

    Settings: ClassVar[type[FamilySettings]] = RegistrySettings

    @abc.abstractmethod
    def pull(self, name: str, tag: str | None, auth: AuthConfig, target: PullTarget,
             progress: Progress) -> list[str]:
        """Pull ``name:tag`` (every tag of the repository when ``tag`` is None; ``tag`` may be
        a ``sha256:`` digest, which pulls without tagging) into ``target``.

        For a manifest list or OCI index the linux manifest of the host's architecture is
        chosen. Every blob is verified against its digest while it streams; images the target
        already has are not downloaded again; layers may download concurrently but reach
        ``target.add_image`` in order, base first. Each pulled tag is set with
        ``target.tag(name, tag, top_id)`` where ``name`` is the name as given. Returns the ids
        of the pulled top images, one per tag. A pull interrupted at any point leaves the
        target with whole images only, and a second pull continues from what is stored.
        """

    @abc.abstractmethod
    def push(self, name: str, tag: str | None, image_ids: dict[str, str], auth: AuthConfig,
             source: PushSource, progress: Progress) -> dict[str, str]:
        """Push local images to the repository ``name``: ``image_ids`` maps each tag to push
        to its image id (``tag`` names the one tag asked for, None for a whole repository).

        Layers go as gzip blobs; blobs the registry already has are skipped, and a layer known
        to exist in another repository of the same registry is mounted from there instead of
        uploaded. Then the config and a Docker schema2 manifest per tag; the manifest digest
        appears in the progress stream. Returns ``{tag: manifest digest}``.
        """

    @abc.abstractmethod
    def login(self, auth: AuthConfig) -> str:
        """Check credentials against the registry ``auth.server_address`` names (the default
        registry when empty); return the status text, "Login Succeeded". Refused credentials
        raise ``Unauthorized`` with "Wrong login/password, please try again"."""

    @abc.abstractmethod
    def search(self, term: str, auth: AuthConfig) -> list[dict]:
        """Repositories matching ``term`` (``host/term`` searches that registry):
        ``[{"name","description","star_count","is_official","is_trusted"}]``, ``[]`` for none."""


@hookspec
def moorage_registry_register() -> list[type[RegistryClient]]:
    """Register registry client classes.

    :return: the ``RegistryClient`` subclasses this plugin provides; the ``[registry] driver``
        config key selects one by its ``name``.

    Called once at daemon start, before any driver is instantiated.
    """
