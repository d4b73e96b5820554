"""Image endpoints (v1.6 shapes): create (import), list, viz, inspect, history, tag, delete.

Handlers parse parameters and dispatch to the image service (``moorage.core.images``) through
the kernel; blocking work runs in core's executor.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from typing import Annotated

import httpx
from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from ..core.errors import Conflict, InvalidParameter, NotFound, NotSupported, Unavailable
from ..core.images import ImageService, setup
from ..core.kernel import Kernel
from ..core.tags import DEFAULT_TAG, validate_repo_name, validate_tag_name
from .params import KernelDep, query_bool
from .streams import BodyReader, IterReader, ProgressReader, json_stream

DOWNLOAD_TIMEOUT = httpx.Timeout(60.0, connect=15.0)


async def get_images(request: Request) -> ImageService:
    kernel: Kernel = request.app.state.kernel
    service = kernel.services.get("images")
    if service is None:
        # Kernel.start normally calls core.images.setup; this covers a kernel started without it
        service = setup(kernel)
    if service is None:
        raise NotSupported("no graph driver is available in this daemon: images are unavailable")
    return service


ImagesDep = Annotated[ImageService, Depends(get_images)]


def download(url: str, label: str, progress, consume):
    """GET ``url`` and hand the body, with ``label`` progress messages, to ``consume(stream)``;
    returns what ``consume`` returns. HTTP errors become ``Unavailable``, a URL httpx cannot
    parse (an invalid host name...) ``InvalidParameter``."""
    try:
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as client, \
                client.stream("GET", url) as answer:
            if answer.status_code >= 400:
                raise Unavailable(f"Got HTTP status code >= 400: {answer.status_code} {answer.reason_phrase}")
            total = int(answer.headers.get("content-length") or 0)
            return consume(ProgressReader(IterReader(answer.iter_raw()), total, label, progress))
    except httpx.HTTPError as exc:
        raise Unavailable(f"Error downloading {url}: {exc}") from None
    except httpx.InvalidURL as exc:
        raise InvalidParameter(f"Bad parameter: cannot download {url!r}: {exc}") from None


async def create(request: Request, kernel: KernelDep, images: ImagesDep) -> Response:
    """``POST /images/create``: import from the body (``fromSrc=-``) or a URL."""
    query = request.query_params
    if query.get("fromImage"):
        from .registry import get_distribution, pull

        return await pull(request, kernel, await get_distribution(request))
    source = query.get("fromSrc", "")
    repo, tag = query.get("repo", ""), query.get("tag", "")
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
            image = download(url, "Importing", progress, lambda stream: images.import_tar(stream, source, repo, tag))
            return {"status": image.short_id}

    return await json_stream(kernel, job)


async def insert(name: str, request: Request, kernel: KernelDep, images: ImagesDep) -> Response:
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
    containers = kernel.services.get("containers")
    if containers is None:
        raise NotSupported("insert needs containers, which need a graph driver")

    def job(progress):
        with tempfile.TemporaryFile(dir=kernel.root) as spool:
            download(url, "Downloading", progress, lambda stream: shutil.copyfileobj(stream, spool, 1 << 20))
            spool.seek(0)
            return {"status": containers.insert(name, url, path, spool)}

    return await json_stream(kernel, job)


async def list_images(request: Request, kernel: KernelDep, images: ImagesDep) -> JSONResponse:
    """``GET /images/json?all=&filter=``: one row per repository:tag (the 1.6 shape)."""
    all_ = query_bool(request, "all")
    pattern = request.query_params.get("filter", "")
    return JSONResponse(await kernel.run_blocking(images.list_rows, all_, pattern))


async def viz(kernel: KernelDep, images: ImagesDep) -> PlainTextResponse:
    """``GET /images/viz``: the image tree in Graphviz dot."""
    return PlainTextResponse(await kernel.run_blocking(images.viz), media_type="text/plain; charset=utf-8")


def container_resolves(kernel: Kernel, name: str) -> bool:
    """Whether ``name`` also names a container: the containers service, once there, answers
    through its ``lookup(name)`` (None when unknown)."""
    containers = kernel.services.get("containers")
    lookup = getattr(containers, "lookup", None)
    if lookup is None:
        return False
    try:
        return lookup(name) is not None
    except NotFound:
        return False


async def inspect(name: str, kernel: KernelDep, images: ImagesDep) -> JSONResponse:
    """``GET /images/{name}/json``: the image JSON with its ``Size``."""
    image = await kernel.run_blocking(images.resolve, name)
    if await kernel.run_blocking(container_resolves, kernel, name):
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
