"""Query-parameter parsing with Go's rules, and the dependencies handlers declare."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..core.errors import InvalidParameter
from ..core.kernel import Kernel

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(value: str | None, name: str = "") -> bool:
    """Go's ``strconv.ParseBool``; empty or absent is false; anything else is a 400."""
    if value is None or value == "":
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidParameter(f"Bad parameter: {name}={value!r} is not a boolean")


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


async def get_api_version(request: Request) -> float:
    """The request's API version as a float, compared as Docker compared it (1.10 == 1.1)."""
    return request.scope.get("moorage.api_version", 1.6)


KernelDep = Annotated[Kernel, Depends(get_kernel)]
ApiVersion = Annotated[float, Depends(get_api_version)]
