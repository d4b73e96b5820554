"""The ``local`` volume driver: Docker's, with its options.

Each volume is a directory of the driver's home, ``<home>/<name>``, holding ``volume.json``
(its options, labels and mount counts, written atomically) and ``_data``, its content and
``Mountpoint``. Options are Docker's local-driver ones:

- none: ``_data`` is a plain directory;
- ``type``, ``device`` and ``o`` (each needs the others as Docker's do: ``o`` needs both, and
  ``type`` and ``device`` each other): ``device`` is mounted on ``_data`` as ``type`` with the
  mount options ``o`` at the first mount and unmounted at the last unmount, e.g. ``type=tmpfs
  device=tmpfs o=size=64m`` or ``type=none device=/host/dir o=bind``;
- ``size`` (a quota): refused, as Docker refuses it on a filesystem without quota support.

Crashes. A volume is made in ``.creating-*`` and renamed into place, and goes by being renamed
to ``.removing-*`` before it is deleted: a new instance drops what a crash left of either, so a
volume is whole or absent. Nothing is deleted below a mount: whatever is mounted on a volume
on its way out is unmounted first, and a mount that does not go stops the removal.
"""

from __future__ import annotations

import builtins
import datetime
import json
import os
import re
import shutil
import subprocess
import threading
import uuid
from pathlib import Path

from moorage.core.sdk.driver import DriverContext, parse_bytes
from moorage.core.sdk.errors import Conflict, DriverError, InvalidParameter, NotFound
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.volume import Volume, VolumeDriver
from moorage.core.sdk.mounts import mounts_below
from moorage.core.sdk.store import fsync_dir, read_json, remove_stale_temp_files, write_json, write_new

VALID_OPTIONS = ("type", "o", "device", "size")
#: an option given -> the options it needs (Docker's ``mandatoryOpts``)
REQUIRED_WITH = {"device": ("type",), "type": ("device",), "o": ("device", "type")}
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
STATE = "volume.json"
DATA = "_data"
CREATING, REMOVING = ".creating-", ".removing-"


def check_name(name: str) -> None:
    """Docker's rule for a local volume's name."""
    if len(name) < 2:
        raise InvalidParameter("volume name is too short, names should be at least two alphanumeric characters")
    if not NAME.fullmatch(name):
        raise InvalidParameter(f'"{name}" includes invalid characters for a local volume name, only '
                               '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                               "directory, use absolute path")


def check_options(options: dict[str, str]) -> None:
    """Docker's checks of the local driver's options, in its order."""
    for key in options:
        if key not in VALID_OPTIONS:
            raise InvalidParameter(f'invalid option: "{key}"')
    if "size" in options:
        size = parse_bytes(options["size"])
        if not isinstance(size, int):
            raise InvalidParameter(f"invalid size: '{options['size']}'")
        if size > 0:
            raise InvalidParameter("quota size requested but no quota support")
    for key, needed in REQUIRED_WITH.items():
        if key in options:
            for other in needed:
                if other not in options:
                    raise InvalidParameter(f'missing required option: "{other}"')


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class LocalVolumeDriver(VolumeDriver):
    """Volumes as directories of the driver's home, mounted over when options say so."""

    name = "local"
    priority = 10

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._lock = threading.RLock()
        remove_stale_temp_files(self.home)
        for entry in sorted(self.home.iterdir()):
            if entry.name.startswith((CREATING, REMOVING)):
                self._delete_tree(entry)  # a create or remove a crash interrupted

    # -- the steps of create and remove (a test's subclass may hold or kill the daemon in one) --
    def step(self, name: str, step: str) -> None:
        """Called at each step of ``create`` (``staged``, ``published``) and ``remove``
        (``unpublished``, ``deleted``); does nothing."""

    # -- the contract ---------------------------------------------------------------------------
    def create(self, name: str, options: dict[str, str], labels: dict[str, str]) -> Volume:
        check_name(name)
        check_options(options)
        with self._lock:
            if (self.home / name).exists():
                raise Conflict(f"volume {name} already exists")
            staging = self.home / f"{CREATING}{name}-{uuid.uuid4().hex[:8]}"
            staging.mkdir(mode=0o701)
            try:
                (staging / DATA).mkdir(mode=0o755)
                record = {"Name": name, "CreatedAt": now(), "Labels": dict(labels), "Options": dict(options),
                          "Mounts": {}}
                write_new(staging / STATE, _dumps(record))
                self.step(name, "staged")
                os.rename(staging, self.home / name)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            fsync_dir(self.home)
            self.step(name, "published")
            return self._volume(record)

    def remove(self, name: str) -> None:
        with self._lock:
            record = self._record(name)
            if record["Mounts"]:
                raise Conflict(f"remove {name}: volume is in use by "
                               f"{', '.join(sorted(c[:12] for c in record['Mounts']))}")
            going = self.home / f"{REMOVING}{name}-{uuid.uuid4().hex[:8]}"
            self._unmount_all(self.home / name)
            os.rename(self.home / name, going)
            fsync_dir(self.home)
            self.step(name, "unpublished")
            self._delete_tree(going)
            self.step(name, "deleted")

    def mount(self, name: str, container_id: str) -> Path:
        with self._lock:
            record = self._record(name)
            data = self.home / name / DATA
            if _needs_mount(record["Options"]) and not os.path.ismount(data):
                _mount(record["Options"], data)
            mounts = record["Mounts"]
            mounts[container_id] = mounts.get(container_id, 0) + 1
            self._save(record)
            return data

    def unmount(self, name: str, container_id: str) -> None:
        with self._lock:
            record = self._record(name)
            mounts = record["Mounts"]
            if container_id not in mounts:
                return
            mounts[container_id] -= 1
            if mounts[container_id] <= 0:
                del mounts[container_id]
            if not mounts and _needs_mount(record["Options"]):
                self._unmount_all(self.home / name / DATA)
            self._save(record)

    def path(self, name: str) -> Path:
        self._record(name)
        return self.home / name / DATA

    def get(self, name: str) -> Volume:
        return self._volume(self._record(name))

    def list(self) -> builtins.list[Volume]:
        volumes = []
        for entry in sorted(self.home.iterdir()):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            record = read_json(entry / STATE)
            if record is not None:
                volumes.append(self._volume(record))
        return volumes

    def cleanup(self) -> None:
        """Volumes stay mounted for the containers that keep running."""

    # -- helpers --------------------------------------------------------------------------------
    def _record(self, name: str) -> dict:
        record = read_json(self.home / name / STATE) if NAME.fullmatch(name) else None
        if record is None:
            raise NotFound(f"get {name}: no such volume")
        return record

    def _save(self, record: dict) -> None:
        write_json(self.home / record["Name"] / STATE, record)

    def _volume(self, record: dict) -> Volume:
        return Volume(name=record["Name"], driver=self.name, mountpoint=self.home / record["Name"] / DATA,
                      created_at=record["CreatedAt"], labels=dict(record["Labels"]),
                      options=dict(record["Options"]), mounts=dict(record["Mounts"]))

    def _unmount_all(self, path: Path) -> None:
        for point in mounts_below(path):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        left = mounts_below(path)
        if left:
            raise DriverError(f"cannot unmount {left[0]}: the volume's data stays")

    def _delete_tree(self, path: Path) -> None:
        self._unmount_all(path)  # never delete through a mount (a bind's host directory)
        shutil.rmtree(path)
        fsync_dir(path.parent)


def _dumps(record: dict) -> bytes:
    return json.dumps(record, indent=1).encode() + b"\n"


def _needs_mount(options: dict[str, str]) -> bool:
    return bool(options.get("type") or options.get("device"))


def _mount(options: dict[str, str], target: Path) -> None:
    command = ["mount", "-t", options["type"]]
    if options.get("o"):
        command += ["-o", options["o"]]
    command += ["--", options["device"], str(target)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip()
        raise DriverError(f"error while mounting volume '{target}': failed to mount local volume: "
                          f"mount {options['device']}:{target}, flags: {options.get('o', '')}: {detail}")


@hookimpl
def moorage_volume_register():
    return [LocalVolumeDriver]
