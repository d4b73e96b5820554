"""Registry clients: fetching images from and sending them to image registries.

Vocabulary. A *reference* names an image in a registry: ``[host[:port]/]repo[:tag|@digest]``;
a name without a host goes to the default registry (the config's ``[registry] default``). The
client speaks the registry's protocol; core owns the local image store. Pulling hands every
layer, in order from the base, to a ``PullTarget`` that core provides; pushing reads local
layers from a ``PushSource``. Progress goes to a ``Progress`` callback as the v1.6 stream's
status messages.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from ..driver import Driver
from . import hookspec


@dataclass(frozen=True)
class AuthConfig:
    """Credentials from ``X-Registry-Auth`` or ``POST /auth``. Never logged or stored."""

    username: str = ""
    password: str = ""
    email: str = ""
    server_address: str = ""

    def __repr__(self) -> str:  # keep passwords out of logs and tracebacks
        return f"AuthConfig(username={self.username!r}, server_address={self.server_address!r})"


@dataclass
class PulledLayer:
    """One layer of a pulled image: its image id in moorage's chain, and its image JSON."""

    id: str
    parent: str | None
    image_json: dict = field(default_factory=dict)


class PullTarget(Protocol):
    """Core's side of a pull."""

    def has_image(self, image_id: str) -> bool:
        """Whether this image (and so its whole parent chain) is already stored."""

    def add_image(self, layer: PulledLayer, tar: BinaryIO) -> None:
        """Store an image whose parent is already stored; ``tar`` is the uncompressed layer."""

    def tag(self, repository: str, tag: str, image_id: str) -> None:
        """Point ``repository:tag`` at a stored image."""


class PushSource(Protocol):
    """Core's side of a push."""

    def chain(self, image_id: str) -> list[PulledLayer]:
        """The image and its ancestors, base first."""

    def layer_tar(self, image_id: str) -> Iterator[bytes]:
        """The image's layer as an uncompressed tar."""


#: ``progress(message)`` with a v1.6 progress object: ``{"status":..., "progress":..., "id":...}``.
Progress = Callable[[dict], None]


class RegistryClient(Driver, abc.ABC):
    """Talks to registries. Methods block; they may use threads of their own for concurrent
    downloads. Network failures raise ``Unavailable``, refused credentials ``Unauthorized``,
    a missing repository or tag ``NotFound``."""

    @abc.abstractmethod
    def pull(self, name: str, tag: str | None, auth: AuthConfig, target: PullTarget,
             progress: Progress) -> list[str]:
        """Pull ``name:tag`` (every tag of the repository when ``tag`` is None) into ``target``.

        Every blob is verified against its digest while it streams; images the target already
        has are not downloaded again; ids are derived deterministically from the content, so
        pulling twice gives the same ids. Returns the ids of the pulled top images. A pull
        interrupted at any point leaves the store consistent (whole images only).
        """

    @abc.abstractmethod
    def push(self, name: str, tag: str | None, image_ids: dict[str, str], auth: AuthConfig,
             source: PushSource, progress: Progress) -> None:
        """Push local images: ``image_ids`` maps each tag to push to its image id."""

    @abc.abstractmethod
    def login(self, auth: AuthConfig) -> str:
        """Check credentials against the registry; return the status text ("Login Succeeded")."""

    @abc.abstractmethod
    def search(self, term: str, auth: AuthConfig) -> list[dict]:
        """Repositories matching ``term``: ``[{"name","description","star_count",
        "is_official","is_trusted"}]``."""


@hookspec
def moorage_registry_register() -> list[type[RegistryClient]]:
    """Register registry client classes.

    :return: the ``RegistryClient`` subclasses this plugin provides; the ``[registry] driver``
        config key selects one by its ``name``.

    Called once at daemon start, before any driver is instantiated.
    """
