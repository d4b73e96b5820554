"""``POST /build?t=&q=&nocache=&rm=&remote=`` (reference §6.1): build an image from a Dockerfile.

The build runs in core's executor (``moorage.plugins.builder``); its output is streamed as 1.6
plain text, each line flushed as it is written. A failure before any output is a 500 with the
message; after output started, the status is already 200 and the stream ends with
``Error build: <message>``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from ..core.errors import MoorageError, NotSupported
from ..core.tags import DEFAULT_TAG, parse_repository_tag, validate_repo_name, validate_tag_name
from ..plugins.builder import Builder, BuildOptions, build_context
from .errors import plain, status_for
from .params import ApiVersion, KernelDep, query_bool
from .streams import BodyReader

log = logging.getLogger(__name__)

_DONE = object()
MEDIA_TYPE = "text/plain; charset=utf-8"


def _text(exc: BaseException) -> str:
    if isinstance(exc, MoorageError):
        return exc.message
    log.error("build failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


async def text_stream(kernel, job: Callable[[Callable[[str], None]], None]) -> Response:
    """Run ``job(write)`` in core's executor and stream what it writes as plain text."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def write(text: str) -> None:
        if text:
            loop.call_soon_threadsafe(queue.put_nowait, text)

    def run() -> None:
        try:
            job(write)
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)
        except BaseException as exc:  # handed to the event loop, which reports it
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    kernel.submit_waiting(run)  # the build runs to its end even if the client goes away
    first = await queue.get()
    if isinstance(first, BaseException):
        # Docker's postBuild answered every failure before output with 500; moorage answers a
        # bad context or tag with its typed status (400) and keeps 500 for the rest
        return plain(_text(first), status_for(first) if isinstance(first, MoorageError) else 500)

    async def body() -> AsyncIterator[bytes]:
        if first is _DONE:
            return
        yield first.encode()
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                yield f"Error build: {_text(item)}\n".encode()
                return
            yield item.encode()

    return StreamingResponse(body(), media_type=MEDIA_TYPE)


async def build(request: Request, kernel: KernelDep, version: ApiVersion) -> Response:
    """``POST /build``: the body is the context tar (any compression), unless ``remote=``
    names a git repository or a Dockerfile URL."""
    if version < 1.3:  # a float: see api.versioning
        return plain("Multipart upload for build is no longer supported. Please upgrade your docker client.", 500)
    query = request.query_params
    options = BuildOptions(tag=query.get("t", ""), quiet=query_bool(request, "q"),
                           nocache=query_bool(request, "nocache"), rm=query_bool(request, "rm"))
    if options.tag:
        repo, tag = parse_repository_tag(options.tag)
        validate_repo_name(repo)  # 400 before the context is read
        validate_tag_name(tag or DEFAULT_TAG)
    remote = query.get("remote", "")
    body = None if remote else BodyReader(request.stream(), asyncio.get_running_loop())

    def job(write: Callable[[str], None]) -> None:
        if kernel.services.get("runner") is None:
            raise NotSupported("no graph driver is available in this daemon: images cannot be built")
        with build_context(kernel.root, body, remote) as context:
            Builder(kernel, write, options).build(context)

    return await text_stream(kernel, job)
