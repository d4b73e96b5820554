"""Named volumes: the service behind ``/volumes``, over every volume driver that serves.

A volume's name is unique in the daemon: the service finds a volume by asking its drivers, which
keep the volumes (core keeps no copy, so nothing can disagree after a crash). ``create`` of a
name that exists with the same driver returns it, as Docker does; with another driver it is a
``Conflict``. A volume is *in use* while a container holds a mount of it (its driver's counts);
one in use is never removed, ``force`` or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from moorage.core.sdk.errors import Conflict, InvalidParameter, MoorageError, NotFound
from moorage.core.sdk.hookspecs.volume import Volume, VolumeDriver
from moorage.core.sdk.ids import new_id
from moorage.core.services.events import EventBus

#: the label Docker puts on the volumes it makes for ``-v /path`` and an image's ``VOLUME``
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
LIST_FILTERS = ("dangling", "driver", "label", "name")
PRUNE_FILTERS = ("label", "label!", "all")


def volume_json(volume: Volume, usage: tuple[int, int] | None = None) -> dict:
    """Docker's Volume object (``UsageData`` only when ``usage``, ``(size, refcount)``, is given)."""
    out = {"CreatedAt": volume.created_at, "Driver": volume.driver, "Labels": volume.labels or None,
           "Mountpoint": str(volume.mountpoint), "Name": volume.name, "Options": volume.options or None,
           "Scope": "local"}
    if usage is not None:
        out["UsageData"] = {"Size": usage[0], "RefCount": usage[1]}
    return out


def _flag(key: str, values: list[str]) -> bool:
    if len(values) != 1 or values[0].lower() not in ("true", "false", "1", "0"):
        raise InvalidParameter(f"invalid filter '{key}={','.join(values)}'")
    return values[0].lower() in ("true", "1")


def _labels_match(labels: Mapping[str, str], wanted: list[str]) -> bool:
    """Every ``key`` or ``key=value`` of ``wanted`` holds."""
    for item in wanted:
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    return True


def _name_matches(name: str, patterns: list[str]) -> bool:
    for pattern in patterns:
        try:
            if re.search(pattern, name):
                return True
        except re.error:
            if pattern in name:
                return True
    return False


@dataclass(frozen=True)
class Pruned:
    names: list[str]
    space: int


class NamedVolumes:
    """The volumes of every serving driver (``drivers``: name -> driver), ``default`` the
    driver a create names none of."""

    def __init__(self, drivers: Mapping[str, VolumeDriver], default: str, events: EventBus) -> None:
        self.drivers = dict(drivers)
        self.default = default
        self.events = events

    def _driver(self, name: str) -> VolumeDriver:
        driver = self.drivers.get(name)
        if driver is None:
            raise NotFound(f"error looking up volume plugin {name}: plugin \"{name}\" not found")
        return driver

    def _find(self, name: str) -> Volume | None:
        for driver in self.drivers.values():
            try:
                return driver.get(name)
            except NotFound:
                continue
        return None

    def get(self, name: str) -> Volume:
        volume = self._find(name)
        if volume is None:
            raise NotFound(f"get {name}: no such volume")
        return volume

    def create(self, name: str = "", driver: str = "", options: Mapping[str, str] | None = None,
               labels: Mapping[str, str] | None = None) -> Volume:
        """``POST /volumes/create``: a generated name, and the anonymous label, when ``name``
        is empty."""
        driver = driver or self.default
        backend = self._driver(driver)
        labels = dict(labels or {})
        if not name:
            name = new_id()
            labels[ANONYMOUS_LABEL] = ""
        existing = self._find(name)
        if existing is not None:
            if existing.driver != driver:
                raise Conflict(f"create {name}: volume name must be unique: a volume with this name exists "
                               f"with driver {existing.driver!r}")
            return existing
        volume = backend.create(name, dict(options or {}), labels)
        self.events.publish("create", name, type="volume", actor_id=name, attributes={"driver": driver})
        return volume

    def list(self, filters: Mapping[str, list[str]] | None = None) -> list[Volume]:
        """``GET /volumes``: filters ``dangling``, ``driver``, ``label`` and ``name``."""
        filters = {k: v for k, v in (filters or {}).items() if v}
        for key in filters:
            if key not in LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        dangling = _flag("dangling", filters["dangling"]) if "dangling" in filters else None
        out = []
        for volume in self._all():
            if dangling is not None and volume.in_use == dangling:
                continue
            if "driver" in filters and volume.driver not in filters["driver"]:
                continue
            if "label" in filters and not _labels_match(volume.labels, filters["label"]):
                continue
            if "name" in filters and not _name_matches(volume.name, filters["name"]):
                continue
            out.append(volume)
        return out

    def _all(self) -> Iterable[Volume]:
        volumes = [v for driver in self.drivers.values() for v in driver.list()]
        return sorted(volumes, key=lambda v: v.name)

    def remove(self, name: str, force: bool = False) -> None:
        """``DELETE /volumes/{name}``: ``Conflict`` while in use; with ``force`` an unknown name
        is no error (Docker's rule)."""
        volume = self._find(name)
        if volume is None:
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        if volume.in_use:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(sorted(volume.mounts))}]")
        self._driver(volume.driver).remove(name)
        self.events.publish("destroy", name, type="volume", actor_id=name, attributes={"driver": volume.driver})

    def usage(self, volume: Volume) -> tuple[int, int]:
        """``(size in bytes, containers holding it)``, for ``UsageData``."""
        return self._driver(volume.driver).size(volume.name), len(volume.mounts)

    def prune(self, filters: Mapping[str, list[str]] | None = None) -> Pruned:
        """``POST /volumes/prune``: the default driver's volumes that are not in use and have
        no options (Docker's rule: a mount reclaims no space); only anonymous ones unless the
        ``all`` filter is true (API 1.42+); narrowed by ``label`` and ``label!``."""
        filters = {k: v for k, v in (filters or {}).items() if v}
        for key in filters:
            if key not in PRUNE_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        every = _flag("all", filters["all"]) if "all" in filters else False
        names, space = [], 0
        for volume in self._all():
            if (volume.in_use or volume.driver != self.default or volume.options
                    or not (every or ANONYMOUS_LABEL in volume.labels)):
                continue
            if "label" in filters and not _labels_match(volume.labels, filters["label"]):
                continue
            if "label!" in filters and any(_labels_match(volume.labels, [w]) for w in filters["label!"]):
                continue
            size = self._driver(volume.driver).size(volume.name)
            try:
                self.remove(volume.name)
            except MoorageError:  # taken or removed meanwhile, or the driver failed: Docker goes on
                continue
            names.append(volume.name)
            space += max(size, 0)
        if names:
            self.events.publish("prune", "", type="volume", attributes={"reclaimed": str(space)})
        return Pruned(names, space)
