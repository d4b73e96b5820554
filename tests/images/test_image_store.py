"""The image store against every registered graph driver: registration, lookup, tags, deletion,
crash recovery, and the registry driver's PullTarget/PushSource side."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
import threading

import pytest
from conftest import make_tar

from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.kernel.plugins import PluginManager
from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.errors import Conflict, InvalidParameter, MoorageError, NotFound
from moorage.core.sdk.hookspecs import hookimpl
from moorage.core.sdk.hookspecs.registry import PulledLayer
from moorage.core.sdk.ids import new_id
from moorage.core.services.events import EventBus
from moorage.core.services.images import EMPTY_CONFIG, ImageService, format_time, glob_match, parse_time


def add(store: ImageService, parent: str = "", files: dict | None = None, cmd: list[str] | None = None):
    config = dict(EMPTY_CONFIG, Cmd=cmd) if cmd else None
    image = store.new_image(parent=parent, container_config=config)
    return store.register(image, io.BytesIO(make_tar(files or {"f-" + image.id[:6]: image.id.encode()})))


def test_register_writes_json_and_layersize(store):
    image = add(store, files={"etc": None, "etc/hello": b"hi there", "link": "etc/hello"})
    stored = json.loads((store.graph_dir / image.id / "json").read_text())
    assert list(stored) == ["id", "created", "container_config", "docker_version", "architecture", "Size"]
    assert stored["Size"] == 0 and stored["id"] == image.id
    assert int((store.graph_dir / image.id / "layersize").read_text()) == image.size == len(b"hi there")
    path = store.driver.get(image.id)
    try:
        assert (path / "etc/hello").read_bytes() == b"hi there"
        assert os.readlink(path / "link") == "etc/hello"
    finally:
        store.driver.put(image.id)
    assert list(store.tmp_dir.iterdir()) == []


def test_child_sees_parent_and_sizes_add_up(store):
    base = add(store, files={"a": b"12345"})
    child = add(store, parent=base.id, files={"b": b"123"})
    assert store.virtual_size(child) == 8
    assert [i.id for i in store.ancestry(child.id)] == [child.id, base.id]
    path = store.driver.get(child.id)
    try:
        assert (path / "a").read_bytes() == b"12345" and (path / "b").read_bytes() == b"123"
    finally:
        store.driver.put(child.id)


def test_register_refuses_duplicates_and_missing_parents(store):
    image = add(store)
    with pytest.raises(Conflict):
        store.register(store.get(image.id), io.BytesIO(make_tar({"x": b"x"})))
    with pytest.raises(NotFound):
        add(store, parent=new_id())
    assert len(store) == 1


class GatedReader:
    """A layer stream that stops half-way until ``gate`` is set."""

    def __init__(self, data: bytes, gate: threading.Event, reached: threading.Event) -> None:
        self._data, self._gate, self._reached, self._pos = data, gate, reached, 0

    def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._data) // 2 and not self._gate.is_set():
            self._reached.set()
            self._gate.wait(30)
        n = len(self._data) - self._pos if n is None or n < 0 else min(n, 4096)
        chunk = self._data[self._pos:self._pos + n]
        self._pos += len(chunk)
        return chunk


def test_concurrent_registration_and_deletion(store):
    parent = add(store)
    gate, reached = threading.Event(), threading.Event()
    image = store.new_image(parent=parent.id)
    data = make_tar({"big": bytes(200_000)})
    worker = threading.Thread(target=store.register, args=(image, GatedReader(data, gate, reached)))
    worker.start()
    try:
        assert reached.wait(30)
        # the same id again must not touch the layer being written
        with pytest.raises(Conflict):
            again = type(image)(id=image.id, created=image.created, parent=parent.id)
            store.register(again, io.BytesIO(make_tar({"x": b"x"})))
        assert store.driver.exists(image.id)
        # the parent of a registration in progress is kept
        assert store.delete(parent.id) == []
        assert store.exists(parent.id)
    finally:
        gate.set()
        worker.join(30)
    assert store.exists(image.id) and store.get(image.id).size == 200_000


def test_failed_registration_leaves_nothing(store):
    broken = io.BytesIO(make_tar({"a": b"x" * 5000})[:1500])  # cut inside the file
    image = store.new_image()
    with pytest.raises(InvalidParameter):
        store.register(image, broken)
    assert not store.exists(image.id) and not store.driver.exists(image.id)
    assert not (store.graph_dir / image.id).exists() and list(store.tmp_dir.iterdir()) == []


def test_hostile_tar_cannot_write_outside_the_layer(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for files in ({"../../../../../../" + str(outside) + "/dotdot": b"evil"},
                  {"escape": str(outside), "escape/through-link": b"evil"}):
        image = store.new_image()
        with pytest.raises(InvalidParameter):
            store.register(image, io.BytesIO(make_tar(files)))
        assert not store.driver.exists(image.id) and len(store) == 0
        assert list(outside.iterdir()) == []


def test_interrupted_registration_is_cleaned_at_start(store, graph_driver):
    kept = add(store)
    # what a daemon killed half-way leaves: the marker, a filled layer, a half-built json dir
    doomed = new_id()
    (store.tmp_dir / f"{doomed}.pending").touch()
    graph_driver.create(doomed, kept.id)
    (store.tmp_dir / f"build-{doomed}").mkdir()
    # and a deletion killed after its rename
    deleted = add(store)
    os.rename(store.graph_dir / deleted.id, store.tmp_dir / f"deleting-{deleted.id}")
    again = ImageService(store.root, graph_driver, version="test")
    assert {i.id for i in again.all()} == {kept.id}
    assert not graph_driver.exists(doomed) and not graph_driver.exists(deleted.id)
    assert graph_driver.exists(kept.id)
    assert list(again.tmp_dir.iterdir()) == []


def test_tag_store_file_and_lookup(store):
    image = add(store)
    other = add(store)
    store.tag_image(image.id, "busybox")
    store.tag_image(image.id[:8], "localhost:5000/team/app", "v1")
    store.tag_image(other.id, "busybox", "old")
    path = store.root / f"repositories-{store.driver.name}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"Repositories": {
        "busybox": {"latest": image.id, "old": other.id}, "localhost:5000/team/app": {"v1": image.id}}}
    assert store.lookup("busybox").id == image.id
    assert store.lookup("busybox:latest").id == image.id
    assert store.lookup("busybox:old").id == other.id
    assert store.lookup(f"busybox:{other.id[:6]}").id == other.id  # a tag taken as an id prefix
    assert store.lookup("localhost:5000/team/app:v1").id == image.id
    assert store.lookup("localhost:5000/team/app") is None  # latest is not there
    assert store.lookup("busybox:nope") is None and store.lookup("") is None
    with pytest.raises(InvalidParameter, match="Illegal tag name: a/b"):
        store.tag_image(image.id, "busybox", "a/b")
    with pytest.raises(InvalidParameter, match="Repository name can't be empty"):
        store.tag_image(image.id, "")
    with pytest.raises(NotFound, match="Image does not exist: nothing"):
        store.tag_image("nothing", "x")
    reloaded = ImageService(store.root, store.driver)
    assert reloaded.tags.repositories() == store.tags.repositories()


def test_ambiguous_id_prefix_is_not_found(store):
    ids = [add(store).id for _ in range(12)]
    firsts = [i[0] for i in ids]
    shared = next(c for c in firsts if firsts.count(c) > 1) if len(set(firsts)) < len(firsts) else None
    if shared is not None:
        assert store.lookup(shared) is None
    assert store.lookup(ids[0]).id == ids[0]


def test_delete_untag_and_recursive_rules(store):
    base = add(store)
    middle = add(store, parent=base.id)
    leaf = add(store, parent=middle.id)
    side = add(store, parent=base.id)
    store.tag_image(leaf.id, "app", "one")
    store.tag_image(leaf.id, "other", "x")
    store.tag_image(side.id, "side")
    # tagged in two repositories: deleting by id removes nothing
    assert store.delete(leaf.id[:10]) == []
    assert store.delete("other:x") == [{"Untagged": leaf.short_id}]
    # the last tag: the leaf and its now-childless untagged parent go; base keeps its other child
    assert store.delete("app:one") == [{"Untagged": leaf.short_id}, {"Deleted": leaf.short_id},
                                       {"Deleted": middle.short_id}]
    assert {i.id for i in store.all()} == {base.id, side.id}
    assert not store.driver.exists(leaf.id) and not store.driver.exists(middle.id)
    # deleting an untagged parent takes its untagged children; a tagged child stops it
    assert store.delete(base.id) == []
    store.delete("side")
    assert len(store) == 0
    assert [e.status for e in store.events.history(1)] == ["untag", "untag", "delete", "delete", "untag",
                                                          "delete", "delete"]
    assert store.hooks.deleted == [leaf.id, middle.id, side.id, base.id]
    with pytest.raises(NotFound, match="No such image: gone"):
        store.delete("gone")


def test_delete_by_id_untags_every_tag_of_one_repository(store):
    image = add(store)
    store.tag_image(image.id, "repo", "a")
    store.tag_image(image.id, "repo", "b")
    assert store.delete(image.id) == [{"Untagged": image.short_id}] * 2 + [{"Deleted": image.short_id}]


def test_list_rows_heads_all_filter_and_sort(store):
    base = add(store)
    child = add(store, parent=base.id)
    lone = add(store)
    store.tag_image(child.id, "utest", "tag1")
    store.tag_image(child.id, "utest/docker", "tag2")
    store.tag_image(child.id, "utest:5000/docker", "tag3")
    rows = store.list_rows()
    assert {(r.get("Repository"), r.get("Tag")) for r in rows} == {
        ("utest", "tag1"), ("utest/docker", "tag2"), ("utest:5000/docker", "tag3"), (None, None)}
    untagged = [r for r in rows if "Repository" not in r]
    assert [r["Id"] for r in untagged] == [lone.id] and "Tag" not in untagged[0]
    assert {r["Id"] for r in store.list_rows(all=True) if "Repository" not in r} == {base.id, lone.id}
    assert len(store.list_rows(filter="utest*/*")) == 2
    assert len(store.list_rows(filter="utest")) == 1
    assert len(store.list_rows(filter="utest*")) == 1
    assert len(store.list_rows(filter="*5000*/*")) == 1
    assert store.list_rows(filter="nothing*") == []
    keys = [(-r["Created"], r.get("Tag", "")) for r in rows]
    assert keys == sorted(keys)
    assert rows[0]["VirtualSize"] == rows[0]["Size"] + (base.size if rows[0]["Id"] == child.id else 0)


def test_history_and_viz(store):
    base = add(store, cmd=["/bin/sh", "-c", "echo base"])
    child = add(store, parent=base.id)
    store.tag_image(child.id, "app")
    history = store.history("app")
    assert [h["Id"] for h in history] == [child.short_id, base.short_id]
    assert history[0]["Tags"] == ["app:latest"] and "CreatedBy" not in history[0]
    assert history[1]["CreatedBy"] == "/bin/sh -c echo base" and "Tags" not in history[1]
    lines = store.viz().splitlines()
    assert lines[0] == "digraph docker {" and lines[-1] == "}" and lines[-2] == " base [style=invisible]"
    assert f' base -> "{base.short_id}" [style=invis]' in lines
    assert f' "{base.short_id}" -> "{child.short_id}"' in lines
    assert (f' "{child.short_id}" [label="{child.short_id}\\napp:latest",shape=box,fillcolor="paleturquoise",'
            f'style="filled,rounded"];') in lines


def test_pull_target_and_push_source_round_trip(store, graph_driver):
    base = add(store, files={"bin": None, "bin/tool": b"#!/bin/sh\n"})
    child = add(store, parent=base.id, files={"etc": None, "etc/conf": b"k=v\n"})
    chain = store.chain(child.id)
    assert [c.id for c in chain] == [base.id, child.id] and chain[1].parent == base.id
    second_root = graph_driver.context.root.parent / f"second-{new_id()[:8]}"  # on the same filesystem
    (second_root / "graph" / graph_driver.name).mkdir(parents=True)
    driver2 = type(graph_driver)(DriverContext.standalone(type(graph_driver), second_root / "graph" / graph_driver.name,
                                                          graph_driver.options, root=second_root))
    target = ImageService(second_root, driver2)
    for layer in chain:
        assert not target.has_image(layer.id)
        tar = io.BytesIO(b"".join(store.layer_tar(layer.id)))
        target.add_image(PulledLayer(layer.id, layer.parent, layer.image_json), tar)
        assert target.has_image(layer.id)
    target.tag("mirror", "v1", child.id)
    assert target.lookup("mirror:v1").id == child.id
    path = driver2.get(child.id)
    try:
        assert (path / "bin/tool").read_bytes() == b"#!/bin/sh\n" and (path / "etc/conf").read_bytes() == b"k=v\n"
    finally:
        driver2.put(child.id)
    with tarfile.open(fileobj=io.BytesIO(b"".join(store.layer_tar(child.id)))) as tar:
        assert "bin/tool" not in {m.name.lstrip("./") for m in tar.getmembers()}
    driver2.cleanup()


def test_hook_moorage_image_deleted(graph_driver):
    seen = []

    class Plugin:
        @hookimpl
        def moorage_image_deleted(self, image_id):
            seen.append(image_id)

    pm = PluginManager()
    pm.register(Plugin(), name="recorder")
    store = ImageService(graph_driver.context.root, graph_driver, hooks=LifecycleHooks(pm.hook), events=EventBus())
    image = add(store)
    assert store.delete(image.id) == [{"Deleted": image.short_id}]
    assert seen == [image.id]


def test_times_and_globs():
    assert parse_time("2013-10-10T12:00:00.123456789Z") == 1381406400
    assert parse_time("2013-10-10T14:00:00+02:00") == 1381406400
    assert parse_time(format_time(1381406400_500000000)) == 1381406400
    assert format_time(1381406400_000000000) == "2013-10-10T12:00:00Z"
    assert glob_match("b[a-c]x", "bbx") and not glob_match("b[^b]x", "bbx") and not glob_match("*", "a/b")
    assert not glob_match("[", "[")


def test_a_layer_the_driver_refuses_to_remove_keeps_its_image(store, graph_driver):
    image = add(store)
    graph_driver.create("c" * 64 + "-init", image.id)  # a container's init layer built on it
    try:
        try:
            removed = store.delete(image.id)
        except MoorageError:
            # the driver refused: the image is whole, on disk and in memory
            assert store.exists(image.id) and (store.graph_dir / image.id / "json").exists()
            assert graph_driver.exists(image.id) and list(store.tmp_dir.iterdir()) == []
        else:
            assert removed == [{"Deleted": image.short_id}] and not (store.graph_dir / image.id).exists()
        assert ImageService(store.root, graph_driver).exists(image.id) == store.exists(image.id)
    finally:
        graph_driver.remove("c" * 64 + "-init")
