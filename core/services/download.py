"""Fetching a URL for the daemon (``POST /images/create?fromSrc=URL``, ``/images/{name}/insert``,
a build's ``remote=`` Dockerfile and ``ADD URL``): one copy, with Docker's behaviour.

As Go's HTTP client did for Docker, redirects are followed and a compressed transfer encoding
is decoded, so a server's ``Content-Encoding: gzip`` never reaches an image layer or a file
ADD writes; a status of 400 or more is an error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import BinaryIO, TypeVar

import httpx

from moorage.core.sdk.archive import IterStream
from moorage.core.sdk.errors import InvalidParameter, Unavailable

T = TypeVar("T")

TIMEOUT = httpx.Timeout(60.0, connect=15.0)


def download(url: str, consume: Callable[[BinaryIO, int], T]) -> T:
    """GET ``url`` and hand its body to ``consume(stream, size)`` (``size``: the announced
    ``Content-Length``, 0 when unknown); returns what ``consume`` returns. Failures to fetch
    become ``Unavailable``; ``consume``'s own errors pass through."""
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=True) as client, client.stream("GET", url) as answer:
            if answer.status_code >= 400:
                raise Unavailable(f"Got HTTP status code >= 400: {answer.status_code} {answer.reason_phrase}")
            size = int(answer.headers.get("content-length") or 0) if "content-encoding" not in answer.headers else 0
            return consume(IterStream(answer.iter_bytes()), size)
    except httpx.HTTPError as exc:
        raise Unavailable(f"Error downloading {url}: {exc}") from None
    except httpx.InvalidURL as exc:  # an invalid host name...
        raise InvalidParameter(f"Bad parameter: cannot download {url!r}: {exc}") from None
