"""The shared init layers (``core/services/init_layers.py``), on every graph driver."""

from __future__ import annotations

import os

import pytest

from moorage.core.services.container import Container
from moorage.core.services.container_model import ContainerConfig, InternalState
from moorage.core.services.images import ImageService
from moorage.core.services.init_layers import INIT_DIRS, INIT_FILES, InitLayers, init_layer_id

from .test_image_store import add


def visible(driver, layer: str) -> set[str]:
    path = driver.get(layer)
    try:
        return {os.path.relpath(os.path.join(d, n), path) for d, dirs, files in os.walk(path) for n in dirs + files}
    finally:
        driver.put(layer)


def counting_creates(driver, monkeypatch) -> list[str]:
    made: list[str] = []
    create = driver.create

    def counted(id, parent):
        made.append(id)
        return create(id, parent)

    monkeypatch.setattr(driver, "create", counted)
    return made


def test_one_init_layer_per_image_holds_the_mount_points_on_top_of_the_image(store, monkeypatch):
    image = add(store, files={"etc": None, "etc/passwd": b"root:x:0:0::/:/bin/sh\n"})
    made = counting_creates(store.driver, monkeypatch)
    layer = store.init_layers.ensure(image.id)
    assert layer == init_layer_id(image.id) == f"{image.id}-init"
    assert store.init_layers.ensure(image.id) == layer and made == [layer]
    # a daemon started anew finds the complete layer by its marker and does not make it again
    assert InitLayers(store.init_layers.markers, store.driver).ensure(image.id) == layer and made == [layer]
    assert set(INIT_DIRS) | set(INIT_FILES) | {"etc/passwd"} <= visible(store.driver, layer)


def test_an_init_layer_a_crash_cut_short_is_made_anew(store):
    image = add(store)
    layer = init_layer_id(image.id)
    store.driver.create(layer, image.id)  # created, never filled, no marker: as a crash leaves it
    assert "proc" not in visible(store.driver, layer)
    assert ImageService(store.root, store.driver).init_layers.ensure(image.id) == layer
    assert {"proc", "etc/hosts"} <= visible(store.driver, layer)
    assert (store.init_layers.markers / image.id).exists()


def test_deleting_the_image_removes_its_init_layer_and_marker(store):
    base = add(store)
    child = add(store, parent=base.id)
    for image in (base, child):
        store.init_layers.ensure(image.id)
    assert store.delete(child.id) == [{"Deleted": child.short_id}, {"Deleted": base.short_id}]
    for image in (base, child):
        assert not store.driver.exists(init_layer_id(image.id)) and not store.driver.exists(image.id)
        assert not (store.init_layers.markers / image.id).exists()
    assert not list(store.init_layers.markers.iterdir())


def test_a_failed_creation_leaves_no_layer(store, monkeypatch):
    image = add(store)

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(store.driver, "apply_diff", broken, raising=False)
    monkeypatch.setattr("moorage.core.services.init_layers.differ_for", lambda driver: driver)
    with pytest.raises(OSError, match="disk full"):
        store.init_layers.ensure(image.id)
    assert not store.driver.exists(init_layer_id(image.id))
    assert not (store.init_layers.markers / image.id).exists()


def test_a_container_names_its_init_layer_and_older_ones_had_their_own(tmp_path):
    shared = Container(id="c" * 64, created="", path="true", args=[], config=ContainerConfig(), image="i" * 64,
                       name="/a", directory=tmp_path, internal=InternalState(init_layer="i" * 64 + "-init"))
    older = Container(id="d" * 64, created="", path="true", args=[], config=ContainerConfig(), image="i" * 64,
                      name="/b", directory=tmp_path)
    assert shared.init_layer == "i" * 64 + "-init" and older.init_layer == "d" * 64 + "-init"


def test_an_image_pinned_for_a_container_being_made_is_not_deleted(store):
    image = add(store)
    with store.pinned(image.id):
        assert store.delete(image.id) == []
        assert store.exists(image.id)
    assert store.delete(image.id) == [{"Deleted": image.short_id}]
