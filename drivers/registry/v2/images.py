"""Manifests and configs: choosing a platform, deriving moorage's ids, and translating the
registry's image config to the v1.6 image JSON (and back, for pushes)."""

from __future__ import annotations

import copy
import hashlib
import platform
from typing import Any

from moorage.core.sdk.errors import InvalidParameter
from moorage.core.sdk.hookspecs.registry import V16_CONFIG_FIELDS, PulledLayer

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: Always offer every type: the registry converts or hides what the Accept header lacks.
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)

_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
           "s390x": "s390x", "riscv64": "riscv64"}

#: Keys of the OCI/Docker image config's ``config`` that have a v1.6 counterpart of the same name.
_SHARED_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr",
                "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env", "Cmd", "Image", "Volumes",
                "WorkingDir", "Entrypoint", "NetworkDisabled")


def host_platform() -> tuple[str, str]:
    machine = platform.machine()
    return "linux", _ARCHES.get(machine, machine)


def select_manifest(index: dict, wanted: tuple[str, str] | None = None) -> dict:
    """The descriptor of the index entry for ``wanted`` (os, architecture; the host's by
    default), preferring an entry without a variant. Raises ``InvalidParameter`` if none fits."""
    os_name, arch = wanted or host_platform()
    candidates = []
    for entry in index.get("manifests") or []:
        plat = entry.get("platform") or {}
        if plat.get("os") == os_name and plat.get("architecture") == arch:
            candidates.append(entry)
    if not candidates:
        offered = sorted({f"{(e.get('platform') or {}).get('os')}/{(e.get('platform') or {}).get('architecture')}"
                          for e in index.get("manifests") or []})
        raise InvalidParameter(f"no manifest for {os_name}/{arch} in the image index (it has {', '.join(offered)})")
    candidates.sort(key=lambda e: bool((e.get("platform") or {}).get("variant")))
    return candidates[0]


def chain_ids(diff_ids: list[str], config_digest: str) -> list[str]:
    """moorage's image ids for a layer chain, base first: each is sha256 over the parent's id and
    the layer's diff_id, and the top one also over the config digest, so that two images
    sharing layers share their lower images but each has its own top."""
    ids: list[str] = []
    parent = ""
    for n, diff_id in enumerate(diff_ids):
        text = f"moorage-layer\n{parent}\n{diff_id}\n"
        if n == len(diff_ids) - 1:
            text += f"{config_digest}\n"
        parent = hashlib.sha256(text.encode()).hexdigest()
        ids.append(parent)
    return ids


def v16_config(config: dict | None) -> dict:
    """A full v1.6 Config from an image config's ``config`` object."""
    out = copy.deepcopy(V16_CONFIG_FIELDS)
    for key in _SHARED_KEYS:
        value = (config or {}).get(key)
        if value is not None:
            out[key] = value
    return out


def _v1_arch(arch: str) -> str:
    return "x86_64" if arch == "amd64" else arch


def image_jsons(config: dict, ids: list[str], sizes: list[int]) -> list[PulledLayer]:
    """The v1.6 image JSON of every image of a chain, base first."""
    history = [h for h in config.get("history") or [] if not h.get("empty_layer")]
    if len(history) != len(ids):
        history = [{}] * len(ids)
    created = config.get("created") or "1970-01-01T00:00:00Z"
    layers = []
    for n, image_id in enumerate(ids):
        top = n == len(ids) - 1
        parent = ids[n - 1] if n else None
        container_config = copy.deepcopy(V16_CONFIG_FIELDS)
        if history[n].get("created_by"):
            container_config["Cmd"] = ["/bin/sh", "-c", history[n]["created_by"]]
        data: dict[str, Any] = {"id": image_id}
        if parent:
            data["parent"] = parent
        data["created"] = created if top else (history[n].get("created") or created)
        data["container_config"] = container_config
        if top:
            data["config"] = v16_config(config.get("config"))
        if config.get("docker_version"):
            data["docker_version"] = config["docker_version"]
        author = config.get("author") if top else history[n].get("author")
        if author:
            data["author"] = author
        if history[n].get("comment"):
            data["comment"] = history[n]["comment"]
        data["architecture"] = _v1_arch(config.get("architecture") or "amd64")
        data["os"] = config.get("os") or "linux"
        data["Size"] = sizes[n]
        layers.append(PulledLayer(image_id, parent, data))
    return layers


def push_config(chain: list[PulledLayer], diff_ids: list[str]) -> dict:
    """The Docker/OCI image config of a local chain (top image last)."""
    top = chain[-1].image_json
    source = top.get("config") or top.get("container_config") or {}
    config = {k: source[k] for k in _SHARED_KEYS if source.get(k) not in (None, "", [], {}, False)}
    arch = top.get("architecture") or "amd64"
    history = []
    for layer in chain:
        entry: dict[str, Any] = {"created": layer.image_json.get("created") or "1970-01-01T00:00:00Z"}
        cmd = (layer.image_json.get("container_config") or {}).get("Cmd")
        if cmd:
            entry["created_by"] = " ".join(cmd)
        history.append(entry)
    out: dict[str, Any] = {
        "architecture": "amd64" if arch == "x86_64" else arch,
        "os": top.get("os") or "linux",
        "created": top.get("created") or "1970-01-01T00:00:00Z",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    for key in ("author", "docker_version"):
        if top.get(key):
            out[key] = top[key]
    return out


def check_manifest(manifest: dict, media_type: str) -> tuple[dict, list[dict]]:
    """The config descriptor and layer descriptors of an image manifest."""
    if manifest.get("schemaVersion") != 2 or media_type not in MANIFEST_TYPES:
        raise InvalidParameter(f"unsupported manifest type {media_type or manifest.get('mediaType') or 'schema1'}")
    config = manifest.get("config") or {}
    if not config.get("digest"):
        raise InvalidParameter("the manifest names no config blob")
    return config, list(manifest.get("layers") or [])


def manifest_type(manifest: dict, header: str) -> str:
    """The manifest's media type: its own ``mediaType`` (optional in OCI), else the answer's
    Content-Type, else guessed from its shape."""
    media_type = manifest.get("mediaType") or header.split(";")[0].strip()
    if media_type in INDEX_TYPES or media_type in MANIFEST_TYPES:
        return media_type
    if "manifests" in manifest:
        return OCI_INDEX
    if "config" in manifest and "layers" in manifest:
        return OCI_MANIFEST
    return media_type
