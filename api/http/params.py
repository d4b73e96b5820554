"""Query-parameter parsing with Go's rules, and the dependencies handlers declare: the kernel
(for its executor), the API version, and each service typed with its class (a service the
daemon lacks, for want of its driver, is answered with ``NotSupported``)."""

from __future__ import annotations

from typing import Annotated, TypeVar

from fastapi import Depends, Request

from moorage.api.http.versioning import LEGACY, Version
from moorage.core.kernel.kernel import Kernel
from moorage.core.sdk.errors import InvalidParameter, NotSupported
from moorage.core.services.containers import ContainerService
from moorage.core.services.distribution import Distribution
from moorage.core.services.images import ImageService
from moorage.core.services.runner import Runner

T = TypeVar("T")

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def go_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool``: ``InvalidParameter`` for anything else, the empty string too."""
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameter(f"{value!r} is not a boolean")


def parse_bool(value: str | None, name: str = "") -> bool:
    """A boolean query parameter: empty or absent is false, as Docker's handlers read them;
    otherwise ``go_bool``, and anything else is a 400."""
    if value is None or value == "":
        return False
    try:
        return go_bool(value)
    except InvalidParameter:
        raise InvalidParameter(f"Bad parameter: {name}={value!r} is not a boolean") from None


def query_bool(request: Request, name: str) -> bool:
    return parse_bool(request.query_params.get(name), name)


def query_int(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidParameter(f"Bad parameter: {name}={value!r} is not an integer") from None


# The dependencies are coroutines: FastAPI runs a plain ``def`` dependency in a worker thread,
# a hop that cost about 0.4 ms per dependency and request here.
async def get_kernel(request: Request) -> Kernel:
    return request.app.state.kernel


async def get_api_version(request: Request) -> Version:
    """The request's API version (``api/http/versioning.py``: 1.6 for an unversioned path)."""
    return request.scope.get("moorage.api_version", LEGACY)


def _available(service: T | None, missing: str) -> T:
    if service is None:
        raise NotSupported(missing)
    return service


async def get_images(request: Request) -> ImageService:
    return _available(request.app.state.kernel.services.images,
                      "no graph driver is available in this daemon: images are unavailable")


async def get_containers(request: Request) -> ContainerService:
    return _available(request.app.state.kernel.services.containers,
                      "containers are not available: no graph driver is selected")


async def get_runner(request: Request) -> Runner:
    return _available(request.app.state.kernel.services.runner,
                      "containers are not available: no graph driver is selected")


async def get_distribution(request: Request) -> Distribution:
    return _available(request.app.state.kernel.services.distribution,
                      "no registry driver is available in this daemon")


KernelDep = Annotated[Kernel, Depends(get_kernel)]
ApiVersion = Annotated[Version, Depends(get_api_version)]
ImagesDep = Annotated[ImageService, Depends(get_images)]
ContainersDep = Annotated[ContainerService, Depends(get_containers)]
RunnerDep = Annotated[Runner, Depends(get_runner)]
DistributionDep = Annotated[Distribution, Depends(get_distribution)]
