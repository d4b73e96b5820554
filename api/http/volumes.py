"""Named volumes (Docker 1.21's endpoints, which today's CLI calls): ``GET /volumes``,
``POST /volumes/create``, ``GET /volumes/{name}``, ``DELETE /volumes/{name}`` and
``POST /volumes/prune``. The service is ``moorage.core.services.named_volumes``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.responses import JSONResponse

from moorage.api.http.containers import json_body
from moorage.api.http.params import ApiVersion, KernelDep, query_bool
from moorage.api.http.system import parse_filters
from moorage.api.http.versioning import Version
from moorage.core.sdk.errors import InvalidParameter, NotSupported
from moorage.core.services.named_volumes import NamedVolumes, volume_json


async def get_volumes(request: Request) -> NamedVolumes:
    volumes = request.app.state.kernel.volumes
    if volumes is None:
        raise NotSupported("no volume driver is available in this daemon: volumes are unavailable")
    return volumes


VolumesDep = Annotated[NamedVolumes, Depends(get_volumes)]


def _field(body: dict, name: str) -> Any:
    """A field of the body, its key matched case-insensitively as Go decodes JSON."""
    for key, value in body.items():
        if key.lower() == name.lower():
            return value
    return None


def _string(body: dict, name: str) -> str:
    value = _field(body, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParameter(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                               f"CreateOptions.{name} of type string")
    return value


def _string_map(body: dict, name: str) -> dict[str, str]:
    value = _field(body, name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidParameter(f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                               f"CreateOptions.{name} of type map[string]string")
    return {str(k): v for k, v in value.items()}


async def create(request: Request, kernel: KernelDep, volumes: VolumesDep) -> JSONResponse:
    body = await json_body(request) or {}
    if not isinstance(body, dict):
        raise InvalidParameter("Bad parameter: the volume create options must be a JSON object")
    volume = await kernel.run_blocking(volumes.create, _string(body, "Name"), _string(body, "Driver"),
                                       _string_map(body, "DriverOpts"), _string_map(body, "Labels"))
    return JSONResponse(volume_json(volume), status_code=201)


async def list_volumes(request: Request, kernel: KernelDep, volumes: VolumesDep) -> JSONResponse:
    filters = parse_filters(request.query_params.get("filters", ""))
    found = await kernel.run_blocking(volumes.list, filters)
    return JSONResponse({"Volumes": [volume_json(v) for v in found], "Warnings": []})


async def inspect(name: str, kernel: KernelDep, volumes: VolumesDep) -> JSONResponse:
    volume = await kernel.run_blocking(volumes.get, name)
    return JSONResponse(volume_json(volume))


async def delete(name: str, request: Request, kernel: KernelDep, volumes: VolumesDep) -> Response:
    await kernel.run_blocking(volumes.remove, name, query_bool(request, "force"))
    return Response(status_code=204)


#: the API versions whose prune removes every unused volume, not only anonymous ones (Docker
#: 1.42 changed it): of those moorage serves, 1.24 to 1.41.
PRUNES_ALL = (Version(1, 24), Version(1, 42))


async def prune(request: Request, kernel: KernelDep, volumes: VolumesDep, version: ApiVersion) -> JSONResponse:
    filters = parse_filters(request.query_params.get("filters", ""))
    if PRUNES_ALL[0] <= version < PRUNES_ALL[1] and "all" not in filters:
        filters["all"] = ["true"]
    pruned = await kernel.run_blocking(volumes.prune, filters)
    return JSONResponse({"VolumesDeleted": pruned.names, "SpaceReclaimed": pruned.space})
