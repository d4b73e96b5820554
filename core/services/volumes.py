"""Volumes and binds (reference §3.1): what a container's ``Config.Volumes``, ``VolumesFrom``
and start's ``Binds`` become as bind mounts.

A bind takes effect only when its destination is also a key of ``Config.Volumes`` (Docker's
rule: the CLI adds that key for ``-v /h:/c``). Other volumes are directories under
``<root>/volumes/<id>/layer``; a fresh volume over a non-empty image directory gets a copy of
that directory's content and its owner.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.sdk.hookspecs.exec import Mount
from moorage.core.sdk.ids import new_id
from moorage.core.sdk.store import ensure_dir
from moorage.core.services.container_config import parse_bind
from moorage.core.services.container_files import safe_join
from moorage.core.services.container_model import HostConfig


def remove_own_volumes(volumes_dir: Path, container, containers: Iterable) -> None:
    """Delete the container's own volumes under ``volumes_dir`` (never bind sources, never
    volumes one of ``containers`` still uses)."""
    volumes_dir = volumes_dir.resolve()
    in_use = {p for c in containers for p in c.volumes.values()}
    for host_path in container.volumes.values():
        path = Path(host_path).resolve()
        if path.parent.parent == volumes_dir and host_path not in in_use:
            shutil.rmtree(path.parent, ignore_errors=True)


class VolumeManager:
    def __init__(self, root: Path, containers) -> None:
        self.dir = Path(root) / "volumes"
        self.containers = containers

    def mounts(self, container, rootfs: Path, host_config: HostConfig) -> list[Mount]:
        """Resolve the container's volumes (recording them on the container) and return the
        mounts, creating their mount points in ``rootfs``."""
        binds: dict[str, tuple[str, bool]] = {}
        for spec in host_config.binds or []:
            source, dest, readonly = parse_bind(spec)
            if not os.path.exists(source):
                raise InvalidParameter(f"Invalid bind mount '{spec}' : source doesn't exist")
            binds[dest] = (source, readonly)
        self._volumes_from(container)
        for path in container.config.volumes or {}:
            dest = os.path.normpath(path)
            if dest in binds:
                source, readonly = binds[dest]
                container.volumes[dest], container.volumes_rw[dest] = source, not readonly
            elif dest not in container.volumes:
                container.volumes[dest] = str(self._new_volume(rootfs, dest))
                container.volumes_rw[dest] = True
        mounts = []
        for dest, source in sorted(container.volumes.items()):
            if not os.path.exists(source):
                raise NotFound(f"The volume {source} of {dest} no longer exists")
            self._mount_point(rootfs, dest, os.path.isdir(source))
            mounts.append(Mount(Path(source), dest, readonly=not container.volumes_rw.get(dest, True)))
        return mounts

    def _volumes_from(self, container) -> None:
        for name in filter(None, (container.config.volumes_from or "").split(",")):
            name, _, mode = name.strip().partition(":")
            other = self.containers.lookup(name)
            if other is None:
                raise NotFound(f"Container {name} not found. Impossible to mount its volumes")
            for dest, source in other.volumes.items():
                if dest not in container.volumes:
                    container.volumes[dest] = source
                    rw = other.volumes_rw.get(dest, True) and mode.lower() != "ro"
                    container.volumes_rw[dest] = rw

    def _new_volume(self, rootfs: Path, dest: str) -> Path:
        layer = ensure_dir(self.dir / new_id() / "layer", 0o755)
        image_dir = safe_join(rootfs, dest.lstrip("/"), follow_last=True)
        if image_dir.is_dir() and any(image_dir.iterdir()):
            subprocess.run(["cp", "-a", "--", f"{image_dir}/.", str(layer)], check=True, capture_output=True)
        if image_dir.is_dir():
            st = image_dir.stat()
            os.chown(layer, st.st_uid, st.st_gid)
            os.chmod(layer, st.st_mode & 0o7777)
        return layer

    @staticmethod
    def _mount_point(rootfs: Path, dest: str, directory: bool) -> None:
        target = safe_join(rootfs, dest.lstrip("/"), follow_last=True)
        if target.exists():
            return
        if directory:
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
