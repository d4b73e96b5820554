"""Image names: which registry, which repository, and how to reach the registry."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.validation import is_registry_host

DOCKER_HUB = "https://registry-1.docker.io"
#: The V1 search API of Docker Hub lives on the index, not on the V2 registry.
DOCKER_HUB_INDEX = "https://index.docker.io"
HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com")

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")


@dataclass(frozen=True)
class Registry:
    """A registry endpoint: ``url`` without a trailing slash, ``host`` as names spell it."""

    url: str
    host: str

    @property
    def is_hub(self) -> bool:
        return self.url == DOCKER_HUB


@dataclass(frozen=True)
class Reference:
    """``registry`` and the ``repository`` path in it; ``fallbacks`` are other repository
    paths to try in order when the first is unknown (``library/x`` then ``x`` on a
    non-Hub default registry)."""

    registry: Registry
    repository: str
    fallbacks: tuple[str, ...] = ()


def is_local(host: str) -> bool:
    """Whether ``host`` (``host[:port]``) is a loopback host, reached over plain http."""
    hostname = urlsplit(f"//{host}").hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def registry_for_host(host: str, insecure: tuple[str, ...] = ()) -> Registry:
    """The endpoint of a host named in an image name: plain http for loopback hosts and the
    configured insecure registries, https otherwise."""
    if host in HUB_ALIASES:
        return Registry(DOCKER_HUB, "docker.io")
    scheme = "http" if is_local(host) or host in insecure else "https"
    return Registry(f"{scheme}://{host}", host)


def registry_from_url(url: str, insecure: tuple[str, ...] = ()) -> Registry:
    """A configured registry (``[registry] default``, ``serveraddress``): a URL or a bare host."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        return registry_for_host(url.split("/")[0], insecure)
    parts = urlsplit(url)
    if parts.hostname in HUB_ALIASES:
        return Registry(DOCKER_HUB, "docker.io")
    return Registry(f"{parts.scheme}://{parts.netloc}", parts.netloc)


def parse_name(name: str, default: Registry, insecure: tuple[str, ...] = ()) -> Reference:
    """Split an image name (without tag) into its registry and repository.

    Raises ``InvalidParameter`` for a name with a scheme or a malformed repository path.
    """
    if "://" in name:
        raise InvalidParameter(f"Invalid repository name ({name}), it must not contain a scheme")
    first, _, rest = name.partition("/")
    if rest and is_registry_host(first):
        registry, path = registry_for_host(first, insecure), rest
        fallbacks: tuple[str, ...] = ()
    else:
        registry, path = default, name
        fallbacks = ()
        if "/" not in path:
            if registry.is_hub:
                path = f"library/{path}"
            else:
                # a mirror of Docker Hub keeps official images under library/, a private
                # registry usually does not: try both, the mirror's way first
                path, fallbacks = f"library/{path}", (path,)
    for component in path.split("/"):
        if not _COMPONENT.match(component):
            raise InvalidParameter(f"Invalid repository name ({name}), only [a-z0-9-_.] are allowed")
    return Reference(registry, path, fallbacks)


def split_host_term(term: str) -> tuple[str | None, str]:
    """``host/term`` -> (host, term); a plain term -> (None, term)."""
    first, _, rest = term.partition("/")
    if rest and is_registry_host(first):
        return first, rest
    return None, term
