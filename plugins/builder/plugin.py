"""The builder as a feature plugin: ``POST /build?t=&q=&nocache=&rm=&remote=`` (reference §6.1).

Registered through the ``moorage`` entry-point group (``builder``), exactly as a third-party
feature is; ``[plugins] blocked = ["builder"]`` leaves the daemon without ``/build`` (404).

The build runs in core's executor; its output is streamed as 1.6 plain text, each line flushed
as it is written. A failure before any output is answered as an error (Docker's postBuild
answered every one with 500: ``JobFailed``); after output started, the status is already
200 and the stream ends with ``Error build: <message>``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from moorage.api.params import ApiVersion, query_bool
from moorage.api.streams import BodyReader
from moorage.core.errors import JobFailed, MoorageError, NotSupported
from moorage.core.executor import Executor
from moorage.core.hookspecs import hookimpl
from moorage.core.hookspecs.features import Feature, FeatureRoute
from moorage.core.tags import DEFAULT_TAG, parse_repository_tag, validate_repo_name, validate_tag_name

from .builder import Builder, BuildOptions
from .context import build_context

log = logging.getLogger(__name__)

_DONE = object()
MEDIA_TYPE = "text/plain; charset=utf-8"


class BuilderFeature(Feature):
    """Builds images from a Dockerfile with the image, container, runner and distribution services."""

    name = "builder"

    def routes(self) -> list[FeatureRoute]:
        return [FeatureRoute("POST", "/build", self.build)]

    async def build(self, request: Request, version: ApiVersion) -> Response:
        """``POST /build``: the body is the context tar (any compression), unless ``remote=``
        names a git repository or a Dockerfile URL."""
        if version < 1.3:  # a float: see api.versioning
            raise NotSupported("Multipart upload for build is no longer supported. Please upgrade your docker client.")
        query = request.query_params
        options = BuildOptions(tag=query.get("t", ""), quiet=query_bool(request, "q"),
                               nocache=query_bool(request, "nocache"), rm=query_bool(request, "rm"))
        if options.tag:
            repo, tag = parse_repository_tag(options.tag)
            validate_repo_name(repo)  # 400 before the context is read
            validate_tag_name(tag or DEFAULT_TAG)
        remote = query.get("remote", "")
        body = None if remote else BodyReader(request.stream(), asyncio.get_running_loop())
        services = self.services

        def job(write: Callable[[str], None]) -> None:
            if services.images is None or services.containers is None or services.runner is None:
                raise NotSupported("no graph driver is available in this daemon: images cannot be built")
            with build_context(self.home, body, remote) as context:
                Builder(services.images, services.containers, services.runner, services.distribution, write,
                        options).build(context)

        return await text_stream(self.executor, job)


def _text(exc: BaseException) -> str:
    if isinstance(exc, MoorageError):
        return exc.message
    log.error("build failed", exc_info=exc)
    return f"{type(exc).__name__}: {exc}"


async def text_stream(executor: Executor, job: Callable[[Callable[[str], None]], None]) -> Response:
    """Run ``job(write)`` in core's executor and stream what it writes as plain text; an error
    before the first output is raised as ``JobFailed`` (500)."""
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

    executor.submit_waiting(run)  # the build runs to its end even if the client goes away
    first = await queue.get()
    if isinstance(first, BaseException):
        # Docker's postBuild answered every failure before output with 500; a typed error (a bad
        # context or tag: 400) keeps its status, anything else is JobFailed (500)
        raise first if isinstance(first, MoorageError) else JobFailed(_text(first)) from first

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


@hookimpl
def moorage_feature_register() -> list[type[Feature]]:
    return [BuilderFeature]
