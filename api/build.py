"""``POST /build?t=&q=&nocache=&rm=&remote=`` (reference §6.1): build an image from a Dockerfile.

The build runs in core's executor (``moorage.plugins.builder``); its output is streamed as 1.6
plain text, each line flushed as it is written. A failure before any output is a 500 with the
message; after output started, the status is already 200 and the stream ends with
``Error build: <message>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import Request, Response
from fastapi.responses import StreamingResponse

from ..core.errors import InvalidParameter, MoorageError, NotSupported
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


def wants_json_messages(request: Request) -> bool:
    """Whether the client reads build output as Docker's JSON message stream (``{"stream":
    ...}`` objects) rather than 0.6's plain text. The API version cannot tell (today's CLI
    negotiates down to 1.6), so the User-Agent does: the docker CLI has sent
    ``Docker-Client/<version>`` since 0.6, and every release from 0.7 on reads JSON messages.
    docker-py 0.2.3 (``python-requests/...``) and other clients keep the 1.6 text."""
    agent = request.headers.get("user-agent", "")
    if not agent.startswith("Docker-Client/"):
        return False
    version = agent.removeprefix("Docker-Client/").split()[0]
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return True  # a development build ("Docker-Client/dev"): a modern CLI
    return (major, minor) >= (0, 7)


def json_message(text: str) -> bytes:
    return json.dumps({"stream": text}).encode() + b"\r\n"


def json_error(text: str) -> bytes:
    return json.dumps({"errorDetail": {"message": text}, "error": text}).encode() + b"\r\n"


async def text_stream(kernel, job: Callable[[Callable[[str], None]], None], as_json: bool = False) -> Response:
    """Run ``job(write)`` in core's executor and stream what it writes as plain text, or as JSON
    messages (``as_json``)."""
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

    encode = json_message if as_json else str.encode

    async def body() -> AsyncIterator[bytes]:
        if first is _DONE:
            return
        yield encode(first)
        while True:
            item = await queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                yield json_error(_text(item)) if as_json else f"Error build: {_text(item)}\n".encode()
                return
            yield encode(item)

    return StreamingResponse(body(), media_type="application/json" if as_json else MEDIA_TYPE)


async def build(request: Request, kernel: KernelDep, version: ApiVersion) -> Response:
    """``POST /build``: the body is the context tar (any compression), unless ``remote=``
    names a git repository or a Dockerfile URL."""
    if version < 1.3:  # a float: see api.versioning
        return plain("Multipart upload for build is no longer supported. Please upgrade your docker client.", 500)
    query = request.query_params
    options = BuildOptions(tag=query.get("t", ""), quiet=query_bool(request, "q"),
                           nocache=query_bool(request, "nocache"), rm=query_bool(request, "rm"),
                           dockerfile=query.get("dockerfile", "") or "Dockerfile", pull=query_bool(request, "pull"))
    # beyond 1.6: --build-arg values (null: the client had no value to send) ...
    options.build_args = {str(k): str(v) for k, v in _json_object(query.get("buildargs", ""), "buildargs").items()
                          if v is not None}
    labels = _json_object(query.get("labels", ""), "labels")
    if labels:  # ... and what the builder cannot honour is refused by name
        return plain(f"Bad parameter: labels ({', '.join(sorted(labels))}) are not supported by moorage's builder",
                     400)
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

    return await text_stream(kernel, job, as_json=wants_json_messages(request))


def _json_object(raw: str, name: str) -> dict:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidParameter(f"Bad parameter: {name} is not JSON") from None
    if value is not None and not isinstance(value, dict):
        raise InvalidParameter(f"Bad parameter: {name} must be a JSON object")
    return value or {}
