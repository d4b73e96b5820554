"""Registry endpoints: pull (``POST /images/create?fromImage=``), push, ``POST /auth`` and
``GET /images/search``, all through the distribution service (``moorage.core.services.distribution``)."""

from __future__ import annotations

import json

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from moorage.api.http.crosssite import refuse_non_json
from moorage.api.http.params import DistributionDep, KernelDep
from moorage.api.http.streams import json_stream
from moorage.core.kernel.kernel import Kernel
from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.registry import AuthConfig
from moorage.core.services.distribution import Distribution


def header_auth(request: Request) -> AuthConfig:
    return AuthConfig.from_header(request.headers.get("x-registry-auth"))


async def pull(request: Request, kernel: Kernel, distribution: Distribution) -> Response:
    """``POST /images/create?fromImage=NAME&tag=``: no tag pulls every tag (Docker 0.6)."""
    name = request.query_params.get("fromImage", "")
    tag = request.query_params.get("tag", "")
    auth = header_auth(request)
    return await json_stream(kernel.executor, lambda progress: distribution.pull(name, tag, auth, progress) and None)


async def push(name: str, request: Request, kernel: KernelDep, distribution: DistributionDep) -> Response:
    """``POST /images/{name}/push``: credentials from ``X-Registry-Auth``, else from the body
    (0.6 clients sent the AuthConfig there; an empty body is refused before the stream)."""
    if request.headers.get("x-registry-auth"):
        auth = header_auth(request)
    else:
        raw = await request.body()
        refuse_non_json(request, raw)
        if not raw.strip():
            raise InvalidParameter("Bad parameter: push needs credentials in X-Registry-Auth or the body")
        try:
            auth = AuthConfig.from_json(json.loads(raw))
        except ValueError:
            raise InvalidParameter("Bad parameter: the body is not a JSON AuthConfig") from None
    tag = request.query_params.get("tag", "")

    def job(progress):
        digests = distribution.push(name, tag, auth, progress)
        progress_final = [f"{t}: digest: {d}" for t, d in sorted(digests.items())]
        for line in progress_final:
            progress({"status": line})
        return None

    return await json_stream(kernel.executor, job)


async def auth(request: Request, kernel: KernelDep, distribution: DistributionDep) -> Response:
    """``POST /auth``: check credentials with the registry; nothing is stored."""
    raw = await request.body()
    refuse_non_json(request, raw)
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise InvalidParameter("Bad parameter: the body is not a JSON AuthConfig") from None
    status = await kernel.run_blocking(distribution.login, AuthConfig.from_json(body))
    if not status:
        return Response(status_code=204)
    return JSONResponse({"Status": status})


async def search(request: Request, kernel: KernelDep, distribution: DistributionDep) -> JSONResponse:
    """``GET /images/search?term=``: 0.6.6's shape, ``[{"name","description","star_count",
    "is_official","is_trusted"}]``."""
    term = request.query_params.get("term", "")
    return JSONResponse(await kernel.run_blocking(distribution.search, term, header_auth(request)))
