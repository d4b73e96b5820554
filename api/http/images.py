"""Image endpoints (v1.6 shapes): create (import), list, viz, inspect, history, tag, delete.

Handlers parse parameters and dispatch to the image service (``moorage.core.services.images``), which
they get as a typed dependency; blocking work runs in core's executor. Where Docker 0.6 answered
500 for an error that maps elsewhere (a bad tag name, an unknown image in history or tag),
``api/http/errors.py`` says so, in its table of those endpoints.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile

from fastapi import Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from moorage.api.http.params import ContainersDep, ImagesDep, KernelDep, get_distribution, query_bool
from moorage.api.http.streams import BodyReader, ProgressReader, json_stream
from moorage.core.sdk.errors import Conflict, InvalidParameter
from moorage.core.services.container_filesystem import ContainerFilesystem
from moorage.core.services.download import download
from moorage.core.services.tags import DEFAULT_TAG, validate_repo_name, validate_tag_name


def download_with_progress(url: str, label: str, progress, consume):
    """``core.download`` with ``label`` progress messages; returns what ``consume(stream)`` returns."""
    return download(url, lambda stream, size: consume(ProgressReader(stream, size, label, progress)))


async def create(request: Request, kernel: KernelDep, images: ImagesDep) -> Response:
    """``POST /images/create``: import from the body (``fromSrc=-``) or a URL; a pull with
    ``fromImage`` (``api/http/registry.py``)."""
    query = request.query_params
    if query.get("fromImage"):
        from moorage.api.http.registry import pull

        return await pull(request, kernel, await get_distribution(request))
    source = query.get("fromSrc", "")
    repo, tag = query.get("repo", ""), query.get("tag", "")
    if repo and not tag and ":" in repo.rsplit("/", 1)[-1]:
        repo, tag = repo.rsplit(":", 1)  # today's CLI sends repo=name:tag (as later Docker split it)
    # Docker 0.6 answered these with 500 (its status came from message text): moorage answers
    # a bad request with 400 and an unknown image with 404 (docs/api.md)
    if not source:
        raise InvalidParameter("Missing parameter: fromImage or fromSrc")
    if repo:  # refused (400) before the body is read: nothing is stored
        validate_repo_name(repo)
        validate_tag_name(tag or DEFAULT_TAG)

    if source == "-":
        body = BodyReader(request.stream(), asyncio.get_running_loop())

        def job(progress):
            image = images.import_tar(body, source, repo, tag)
            return {"status": image.short_id}
    else:
        url = source if "://" in source else f"http://{source}"
        if not url.startswith(("http://", "https://")):
            raise InvalidParameter(f"Bad parameter: fromSrc={source!r}: only http and https URLs can be imported")

        def job(progress):
            progress({"status": f"Downloading from {url}"})
            image = download_with_progress(url, "Importing", progress,
                                           lambda stream: images.import_tar(stream, source, repo, tag))
            return {"status": image.short_id}

    return await json_stream(kernel.executor, job)


async def insert(name: str, request: Request, kernel: KernelDep, images: ImagesDep,
                 containers: ContainersDep) -> Response:
    """``POST /images/{name}/insert?url=&path=``: download ``url`` and commit an image holding it
    at ``path`` on top of ``name`` (no tag, a null config). Streams ``Downloading`` progress, then
    ``{"status": "<full new id>"}``."""
    url, path = request.query_params.get("url", ""), request.query_params.get("path", "")
    if not url or not path:
        raise InvalidParameter("Bad parameter: insert needs url and path")
    if "://" not in url:
        url = f"http://{url}"
    if not url.startswith(("http://", "https://")):
        raise InvalidParameter(f"Bad parameter: url={url!r}: only http and https URLs can be inserted")
    await kernel.run_blocking(images.resolve, name)  # 404 before the stream starts

    def job(progress):
        with tempfile.TemporaryFile(dir=kernel.root) as spool:
            download_with_progress(url, "Downloading", progress,
                                   lambda stream: shutil.copyfileobj(stream, spool, 1 << 20))
            spool.seek(0)
            return {"status": ContainerFilesystem(containers).insert(name, url, path, spool)}

    return await json_stream(kernel.executor, job)


async def list_images(request: Request, kernel: KernelDep, images: ImagesDep) -> JSONResponse:
    """``GET /images/json?all=&filter=``: one row per repository:tag (the 1.6 shape)."""
    all_ = query_bool(request, "all")
    pattern = request.query_params.get("filter", "")
    return JSONResponse(await kernel.run_blocking(images.list_rows, all_, pattern))


async def viz(kernel: KernelDep, images: ImagesDep) -> PlainTextResponse:
    """``GET /images/viz``: the image tree in Graphviz dot."""
    return PlainTextResponse(await kernel.run_blocking(images.viz), media_type="text/plain; charset=utf-8")


async def inspect(name: str, kernel: KernelDep, images: ImagesDep, containers: ContainersDep) -> JSONResponse:
    """``GET /images/{name}/json``: the image JSON with its ``Size``; 409 when ``name`` also
    names a container (Docker 0.6)."""
    image = await kernel.run_blocking(images.resolve, name)
    if await kernel.run_blocking(containers.lookup, name) is not None:
        raise Conflict("Conflict between containers and images")
    return JSONResponse(image.to_json())


async def history(name: str, kernel: KernelDep, images: ImagesDep) -> Response:
    """``GET /images/{name}/history``: the image and its ancestors."""
    return JSONResponse(await kernel.run_blocking(images.history, name))


async def tag(name: str, request: Request, kernel: KernelDep, images: ImagesDep) -> Response:
    """``POST /images/{name}/tag?repo=&tag=&force=``: 201 with an empty body."""
    query = request.query_params
    force = query_bool(request, "force")
    await kernel.run_blocking(images.tag_image, name, query.get("repo", ""), query.get("tag", ""), force)
    return Response(status_code=201)


async def delete(name: str, kernel: KernelDep, images: ImagesDep) -> JSONResponse:
    """``DELETE /images/{name}``: ``[{"Untagged": id}, {"Deleted": id}, ...]``; 409 when nothing went."""
    removed = await kernel.run_blocking(images.delete, name)
    if not removed:
        raise Conflict(f"Conflict, {name} wasn't deleted")
    return JSONResponse(removed)
