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
import json
from collections.abc import Callable
from pathlib import Path

from fastapi import Request, Response

from moorage.api.http.params import ApiVersion, query_bool
from moorage.api.http.streams import BodyReader, error_text, stream_job
from moorage.core.kernel.features import Feature, FeatureRoute, Services
from moorage.core.kernel.pools import Executor
from moorage.core.sdk.errors import InvalidParameter, JobFailed, MoorageError, NotSupported, storage_full
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.services.tags import DEFAULT_TAG, parse_repository_tag, validate_repo_name, validate_tag_name
from moorage.plugins.builder.builder import Builder, BuildOptions
from moorage.plugins.builder.context import build_context
from moorage.plugins.builder.interrupted import sweep

MEDIA_TYPE = "text/plain; charset=utf-8"


class BuilderFeature(Feature):
    """Builds images from a Dockerfile with the image, container, runner and distribution services."""

    name = "builder"

    def __init__(self, services: Services, home: Path, executor: Executor) -> None:
        super().__init__(services, home, executor)
        # before the API listens: what builds the last daemon was killed in left behind
        if services.containers is not None and services.runner is not None:
            sweep(home, services.containers, services.runner)

    def routes(self) -> list[FeatureRoute]:
        return [FeatureRoute("POST", "/build", self.build)]

    async def build(self, request: Request, version: ApiVersion) -> Response:
        """``POST /build``: the body is the context tar (any compression), unless ``remote=``
        names a git repository or a Dockerfile URL."""
        if version < 1.3:  # a float: see api.versioning
            raise NotSupported("Multipart upload for build is no longer supported. Please upgrade your docker client.")
        query = request.query_params
        builder_version = query.get("version", "1")
        if builder_version not in ("", "1"):
            raise InvalidParameter(f"Bad parameter: version={builder_version}: moorage has only the classic builder "
                                   "(version=1); BuildKit is not available, build with DOCKER_BUILDKIT=0")
        options = BuildOptions(tag=query.get("t", ""), quiet=query_bool(request, "q"),
                               nocache=query_bool(request, "nocache"), rm=query_bool(request, "rm"),
                               dockerfile=query.get("dockerfile", "") or "Dockerfile", pull=query_bool(request, "pull"))
        # beyond 1.6: --build-arg values (null: the client had no value to send) ...
        options.target = query.get("target", "")
        options.build_args = {str(k): str(v) for k, v in _json_object(query.get("buildargs", ""), "buildargs").items()
                              if v is not None}
        labels = _json_object(query.get("labels", ""), "labels")
        if labels:  # ... and what the builder cannot honour is refused by name
            raise InvalidParameter(f"Bad parameter: labels ({', '.join(sorted(labels))}) are not supported by "
                                   "moorage's builder")
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

        return await text_stream(self.executor, job, as_json=wants_json_messages(request))


def wants_json_messages(request: Request) -> bool:
    """Whether the client reads build output as Docker's JSON message stream (``{"stream":
    ...}`` objects) rather than 0.6's plain text. The API version cannot tell (today's CLI
    negotiates down to 1.6), so the User-Agent does: the docker CLI has sent
    ``Docker-Client/<version>`` since 0.6, and every release from 0.7 on reads JSON messages.
    docker-py 0.2.3 (``python-requests/...``) and other clients keep the 1.6 text."""
    agent = request.headers.get("user-agent", "")
    if not agent.startswith("Docker-Client/"):
        return False
    parts = agent.removeprefix("Docker-Client/").split()[0].split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return True  # a development build ("Docker-Client/dev"): a modern CLI
    return (major, minor) >= (0, 7)


def json_message(text: str) -> bytes:
    return json.dumps({"stream": text}).encode() + b"\r\n"


def json_error(text: str) -> bytes:
    return json.dumps({"errorDetail": {"message": text}, "error": text}).encode() + b"\r\n"


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


def _job_failed(exc: BaseException) -> BaseException:
    """Docker's postBuild answered every failure before output with 500; a typed error (a bad
    context or tag: 400; a full disk: 507) keeps its status, anything else is ``JobFailed`` (500)."""
    exc = storage_full(exc) or exc
    return exc if isinstance(exc, MoorageError) else JobFailed(error_text(exc))


async def text_stream(executor: Executor, job: Callable[[Callable[[str], None]], None],
                      as_json: bool = False) -> Response:
    """Run ``job(write)`` in core's executor and stream what it writes as plain text, or as JSON
    messages (``as_json``); an error before the first output is raised as ``JobFailed`` (500)."""

    def build(emit: Callable[[str], None]) -> None:
        job(lambda text: emit(text) if text else None)

    if as_json:
        return await stream_job(executor, build, json_message, lambda exc: json_error(error_text(exc)),
                                "application/json", _job_failed)
    return await stream_job(executor, build, str.encode, lambda exc: f"Error build: {error_text(exc)}\n".encode(),
                            MEDIA_TYPE, _job_failed)


@hookimpl
def moorage_feature_register() -> list[type[Feature]]:
    return [BuilderFeature]
