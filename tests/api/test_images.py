"""Image endpoints through a real daemon (vfs graph driver) over its unix socket."""

from __future__ import annotations

import bz2
import gzip
import http.server
import json
import lzma
import os
import re
import threading
import time
from pathlib import Path

import pytest
from conftest import make_tar

CONFIG = '[graph]\ndriver = "vfs"\n'


def decode_stream(body: bytes) -> list[dict]:
    """Objects written back to back with no separator (the 1.6 stream)."""
    decoder, text, pos, out = json.JSONDecoder(), body.decode(), 0, []
    while pos < len(text):
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
    return out




@pytest.fixture
def images_daemon(daemon_factory):
    return daemon_factory(CONFIG)


def import_body(client, body: bytes, repo: str = "", tag: str = ""):
    params = {"fromSrc": "-"}
    if repo:
        params["repo"] = repo
    if tag:
        params["tag"] = tag
    return client.post("/images/create", params=params, content=body)


def imported_id(response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    messages = decode_stream(response.content)
    assert "error" not in messages[-1], messages
    short = messages[-1]["status"]
    assert re.fullmatch(r"[0-9a-f]{12}", short) and list(messages[-1]) == ["status"]
    assert response.content.endswith(b'{"status":"' + short.encode() + b'"}')  # Go's compact JSON
    return short


def orphan_layers(daemon) -> set[str]:
    """Driver layers on disk that no image owns (the vfs layout: graph/vfs/dir/<id>)."""
    layers = {p.name for p in (daemon.root / "graph" / "vfs" / "dir").iterdir()}
    images = {p.name for p in (daemon.root / "graph").iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name)}
    return layers - images


class TarServer:
    """An http.server on 127.0.0.1 serving ``files``; ``stall`` paths send half and then hang."""

    def __init__(self, files: dict[str, bytes], stall: set[str] = frozenset()) -> None:
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in stall:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    server.release.wait(30)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tar_server(busybox_tar):
    data = Path(busybox_tar).read_bytes()
    server = TarServer({"/busybox.tar": data, "/busybox.tar.gz": gzip.compress(data, 1),
                        "/slow.tar": data}, stall={"/slow.tar"})
    yield server
    server.close()


COMPRESSORS = {"plain": lambda b: b, "gzip": lambda b: gzip.compress(b, 1), "bzip2": lambda b: bz2.compress(b, 1),
               "xz": lambda b: lzma.compress(b, preset=0)}


def test_import_from_body_and_inspect(images_daemon, busybox_tar):
    client = images_daemon.client()
    short = imported_id(import_body(client, Path(busybox_tar).read_bytes(), repo="busybox", tag="v1"))
    rows = client.get("/images/json").json()
    assert len(rows) == 1 and rows[0]["Repository"] == "busybox" and rows[0]["Tag"] == "v1"
    assert list(rows[0]) == ["Repository", "Tag", "Id", "Created", "Size", "VirtualSize", "RepoTags"]
    assert rows[0]["RepoTags"] == ["busybox:v1"]  # for 1.7+ clients such as today's docker CLI
    assert rows[0]["Id"].startswith(short) and len(rows[0]["Id"]) == 64
    assert rows[0]["Size"] > 1_000_000 and rows[0]["VirtualSize"] == rows[0]["Size"]
    inspect = client.get("/images/busybox:v1/json")
    assert inspect.status_code == 200 and inspect.headers["content-type"] == "application/json"
    image = inspect.json()
    assert list(image) == ["id", "comment", "created", "container_config", "docker_version", "architecture",
                           "Size"]
    assert image["id"] == rows[0]["Id"] and image["comment"] == "Imported from -"
    assert image["Size"] == rows[0]["Size"] and image["container_config"]["Cmd"] is None
    assert client.get(f"/images/{short}/json").json()["id"] == image["id"]
    assert client.get("/v1.6/images/busybox/json").status_code == 404  # no :latest tag
    assert client.get("/info").json()["Images"] == 1


def test_import_compressed_bodies(images_daemon, busybox_tar):
    client = images_daemon.client()
    data = Path(busybox_tar).read_bytes()
    sizes = set()
    for name, compress in COMPRESSORS.items():
        short = imported_id(import_body(client, compress(data), repo="busybox", tag=name))
        image = client.get(f"/images/busybox:{name}/json").json()
        assert image["id"].startswith(short)
        sizes.add(image["Size"])
    assert len(sizes) == 1  # the same content whatever the compression
    assert sorted(r["Tag"] for r in client.get("/images/json").json()) == sorted(COMPRESSORS)


def test_import_from_url_streams_progress(images_daemon, tar_server):
    client = images_daemon.client()
    url = f"http://127.0.0.1:{tar_server.port}/busybox.tar.gz"
    response = client.post("/images/create", params={"fromSrc": url, "repo": "web"})
    short = imported_id(response)
    messages = decode_stream(response.content)
    assert response.content.startswith(b'{"status":"Downloading from ' + url.encode() + b'"}{"status":"Importing"')
    assert b"\n" not in response.content  # back to back, no separator
    assert messages[0] == {"status": f"Downloading from {url}"}
    progress = [m for m in messages if m.get("status") == "Importing"]
    assert progress and list(progress[-1]) == ["status", "progress"]
    assert progress[-1]["progress"].endswith("(100%)")
    assert re.fullmatch(r" *[0-9.]+ [kMG]?B/[0-9.]+ [kMG]?B \(\d+%\)", progress[-1]["progress"])
    image = client.get("/images/web/json").json()  # the default tag is latest
    assert image["id"].startswith(short) and image["comment"] == f"Imported from {url}"
    # no scheme means http://
    plain = client.post("/images/create", params={"fromSrc": f"127.0.0.1:{tar_server.port}/busybox.tar"})
    imported_id(plain)
    assert decode_stream(plain.content)[0]["status"] == f"Downloading from http://127.0.0.1:{tar_server.port}" \
                                                       "/busybox.tar"


def test_import_errors(images_daemon, tar_server):
    client = images_daemon.client()
    missing = client.post("/images/create", params={"fromSrc": f"http://127.0.0.1:{tar_server.port}/nope.tar"})
    assert missing.status_code == 200  # the stream had started: the error is its last object
    assert missing.content.endswith(b'"errorDetail":{"message":"Got HTTP status code >= 400: 404 Not Found"}}')
    last = decode_stream(missing.content)[-1]
    assert list(last) == ["error", "errorDetail"] and "404" in last["error"]
    assert last["errorDetail"] == {"message": last["error"]}
    garbage = import_body(client, b"this is not a tar archive at all" * 100)
    assert garbage.status_code == 400 and garbage.headers["content-type"].startswith("text/plain")
    bad_tag = import_body(client, make_tar({"a": b"a"}), repo="x", tag="a:b")
    # Docker 0.6 answered 500; a bad name is the client's error (docs/security.md)
    assert bad_tag.status_code == 400 and bad_tag.text.startswith("Illegal tag name: a:b")
    assert client.post("/images/create", params={"fromSrc": "ftp://127.0.0.1/x"}).status_code == 400
    neither = client.post("/images/create")
    assert (neither.status_code, neither.text) == (400, "Missing parameter: fromImage or fromSrc\n")
    assert client.get("/images/json").json() == []
    assert orphan_layers(images_daemon) == set()


def test_hostile_tar_cannot_escape(images_daemon, tmp_path):
    client = images_daemon.client()
    target = tmp_path / "target"
    target.mkdir()
    hostile = [
        make_tar({"../../../../../../../../" + str(target).lstrip("/") + "/dotdot": b"evil"}),
        make_tar({"escape": str(target), "escape/through": b"evil"}),
        make_tar({"abs": "/", "abs" + str(target) + "/through-root": b"evil"}),
    ]
    for body in hostile:
        response = import_body(client, body)
        # refused before the stream started: a plain 400 naming the problem
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert list(target.iterdir()) == []
    assert client.get("/images/json", params={"all": "1"}).json() == []
    assert orphan_layers(images_daemon) == set()
    assert os.listdir(images_daemon.root / "graph" / "_tmp") == []


def test_list_filters_and_bad_booleans(images_daemon, busybox_tar):
    client = images_daemon.client()
    assert client.get("/images/json").json() == []
    base = imported_id(import_body(client, Path(busybox_tar).read_bytes()))
    other = imported_id(import_body(client, make_tar({"hello": b"world"}), repo="hello"))
    for repo, tag in (("utest", "tag1"), ("utest/docker", "tag2"), ("utest:5000/docker", "tag3")):
        assert client.post(f"/images/{base}/tag", params={"repo": repo, "tag": tag}).status_code == 201
    rows = client.get("/images/json").json()
    assert len(rows) == 4
    assert client.get("/images/utest:5000/docker:tag3/json").json()["id"].startswith(base)
    assert client.get("/v1.6/images/utest/docker:tag2/history").json()[0]["Id"] == base
    assert {r.get("Repository") for r in rows} == {"utest", "utest/docker", "utest:5000/docker", "hello"}
    keys = [(-r["Created"], r["Tag"]) for r in rows]
    assert keys == sorted(keys)
    for pattern, count in (("utest*/*", 2), ("utest", 1), ("utest*", 1), ("*5000*/*", 1), ("none*", 0)):
        assert len(client.get("/images/json", params={"filter": pattern}).json()) == count, pattern
    assert client.delete("/images/hello").json() == [{"Untagged": other}, {"Deleted": other}]
    untagged = imported_id(import_body(client, make_tar({"x": b"y"})))
    rows = client.get("/images/json", params={"all": "1"}).json()
    bare = [r for r in rows if "Repository" not in r]
    assert [r["Id"][:12] for r in bare] == [untagged] and "Tag" not in bare[0]
    bad = client.get("/images/json", params={"all": "foobar"})
    assert bad.status_code == 400 and bad.text.startswith("Bad parameter")


def test_tag_rules(images_daemon):
    client = images_daemon.client()
    first = imported_id(import_body(client, make_tar({"a": b"1"}), repo="app", tag="one"))
    second = imported_id(import_body(client, make_tar({"b": b"2"})))
    answer = client.post("/images/app:one/tag", params={"repo": "app", "tag": "two"})
    assert answer.status_code == 201 and answer.content == b""
    assert client.get("/images/app:two/json").json()["id"].startswith(first)
    # an existing tag is overwritten, as Docker 0.6 always did
    assert client.post(f"/images/{second}/tag", params={"repo": "app", "tag": "two", "force": "0"}).status_code == 201
    assert client.get("/images/app:two/json").json()["id"].startswith(second)
    assert client.post(f"/images/{second}/tag", params={"repo": "app"}).status_code == 201
    assert client.get("/images/app/json").json()["id"].startswith(second)
    for params, message in (({"repo": ""}, "Repository name can't be empty"),
                            ({"repo": "app", "tag": "a/b"}, "Illegal tag name: a/b"),
                            ({"repo": "app", "tag": "a:b"}, "Illegal tag name: a:b")):
        answer = client.post(f"/images/{first}/tag", params=params)
        assert answer.status_code == 400 and answer.text.startswith(message), answer.text  # 500 in Docker 0.6
    unknown = client.post("/images/nothing/tag", params={"repo": "x"})
    assert (unknown.status_code, unknown.text) == (404, "Image does not exist: nothing\n")
    assert client.post(f"/images/{first}/tag", params={"repo": "x", "force": "maybe"}).status_code == 400


def test_rmi_rules_and_events(images_daemon):
    client = images_daemon.client()
    since = int(time.time())
    image = imported_id(import_body(client, make_tar({"a": b"1"}), repo="test", tag="test"))
    assert client.post(f"/images/{image}/tag", params={"repo": "other"}).status_code == 201
    conflict = client.delete(f"/images/{image}")
    assert (conflict.status_code, conflict.text) == (409, f"Conflict, {image} wasn't deleted\n")
    answer = client.delete("/images/test:test")
    assert answer.status_code == 200 and answer.json() == [{"Untagged": image}]
    assert answer.headers["content-type"] == "application/json"
    assert client.delete(f"/images/{image}").json() == [{"Untagged": image}, {"Deleted": image}]
    missing = client.delete(f"/images/{image}")
    assert (missing.status_code, missing.text) == (404, f"No such image: {image}\n")
    assert client.get("/images/json").json() == []
    assert orphan_layers(images_daemon) == set()
    with client.stream("GET", "/events", params={"since": since}) as events:
        decoder, text, seen = json.JSONDecoder(), "", []
        for chunk in events.iter_text():
            text += chunk
            while text:
                try:
                    obj, end = decoder.raw_decode(text)
                except ValueError:
                    break
                seen.append(obj)
                text = text[end:]
            if len(seen) >= 3:
                break
    assert [(e["status"], e["id"]) for e in seen] == [("untag", image), ("untag", image), ("delete", image)]


def test_history_viz_and_unknown_names(images_daemon):
    client = images_daemon.client()
    image = imported_id(import_body(client, make_tar({"a": b"1"}), repo="hist"))
    history = client.get("/images/hist/history")
    assert history.status_code == 200 and history.headers["content-type"] == "application/json"
    rows = history.json()
    assert len(rows) == 1 and list(rows[0]) == ["Id", "Tags", "Created"]
    assert rows[0]["Id"] == image and rows[0]["Tags"] == ["hist:latest"]
    unknown = client.get("/images/nothing/history")
    assert (unknown.status_code, unknown.text) == (404, "Image does not exist: nothing\n")
    viz = client.get("/images/viz")
    assert viz.status_code == 200 and viz.headers["content-type"].startswith("text/plain")
    lines = viz.text.splitlines()
    assert lines[0] == "digraph docker {" and f' base -> "{image}" [style=invis]' in lines
    assert all(line.startswith(" ") for line in lines[1:-1]) and lines[-1] == "}"
    missing = client.get("/images/nothing/json")
    assert (missing.status_code, missing.text) == (404, "No such image: nothing\n")
    assert client.get("/v1.6/images/hist/json").json()["id"].startswith(image)


def test_restart_keeps_images_and_tags(daemon_factory, busybox_tar):
    daemon = daemon_factory(CONFIG)
    client = daemon.client()
    image = imported_id(import_body(client, Path(busybox_tar).read_bytes(), repo="keep", tag="me"))
    before = client.get("/images/json").json()
    client.close()
    daemon.stop()
    daemon.start()
    client = daemon.client()
    assert client.get("/images/json").json() == before
    assert client.get("/images/keep:me/json").json()["id"].startswith(image)
    assert client.get("/info").json()["Images"] == 1
    tags = daemon.root / "repositories-vfs"
    assert oct(tags.stat().st_mode & 0o777) == "0o600"
    assert json.loads(tags.read_text())["Repositories"]["keep"]["me"].startswith(image)


def test_sigkill_during_import_leaves_a_consistent_store(daemon_factory, tar_server, busybox_tar):
    daemon = daemon_factory(CONFIG)
    client = daemon.client()
    kept = imported_id(import_body(client, make_tar({"a": b"1"}), repo="kept"))
    before = client.get("/images/json").json()
    url = f"http://127.0.0.1:{tar_server.port}/slow.tar"
    with client.stream("POST", "/images/create", params={"fromSrc": url, "repo": "slow"}) as response:
        text = ""
        for chunk in response.iter_text():
            text += chunk
            if '"Importing"' in text:  # half the tar is in: the layer is being written
                break
        daemon.kill()
    layer_dirs = list((daemon.root / "graph" / "vfs" / "dir").iterdir())
    assert len(layer_dirs) == 2  # the kept image and the half-written one
    daemon.start()
    client = daemon.client()
    assert client.get("/images/json").json() == before
    assert client.get("/images/kept/json").json()["id"].startswith(kept)
    assert orphan_layers(daemon) == set()
    assert os.listdir(daemon.root / "graph" / "_tmp") == []
    imported_id(import_body(client, Path(busybox_tar).read_bytes(), repo="after"))


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_busybox_round_trip_on_driver(daemon_factory, busybox_tar, driver):
    daemon = daemon_factory(f'[graph]\ndriver = "{driver}"\n')
    client = daemon.client()
    assert client.get("/info").json()["Driver"] == driver
    short = imported_id(import_body(client, gzip.compress(Path(busybox_tar).read_bytes(), 1), repo="busybox"))
    assert client.post("/images/busybox/tag", params={"repo": "copy", "tag": "1"}).status_code == 201
    assert client.get("/images/copy:1/history").json()[0]["Tags"] == ["busybox:latest", "copy:1"]
    daemon.stop()
    daemon.start()
    client = daemon.client()
    assert client.get(f"/images/{short}/json").json()["Size"] > 1_000_000
    assert client.delete("/images/copy:1").json() == [{"Untagged": short}]
    assert client.delete("/images/busybox").json() == [{"Untagged": short}, {"Deleted": short}]
    assert client.get("/images/json", params={"all": "1"}).json() == []
    assert os.listdir(daemon.root / "graph" / "_tmp") == []


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_images_used_by_containers(daemon_factory, busybox_tar, driver):
    daemon = daemon_factory(f'[graph]\ndriver = "{driver}"\n')
    client = daemon.client()
    short = imported_id(import_body(client, Path(busybox_tar).read_bytes(), repo="dup"))
    created = client.post("/containers/create", params={"name": "dup"}, json={"Image": "dup", "Cmd": ["true"]})
    assert created.status_code == 201, created.text
    # inspect: the name resolves to both
    answer = client.get("/images/dup/json")
    assert (answer.status_code, answer.text) == (409, "Conflict between containers and images\n")
    assert client.get(f"/images/{short}/json").status_code == 200
    # rmi untags, but the container's layers are built on the image: it stays
    assert client.delete("/images/dup").json() == [{"Untagged": short}]
    assert client.get(f"/images/{short}/json").status_code == 200
    kept = client.delete(f"/images/{short}")
    assert (kept.status_code, kept.text) == (409, f"Conflict, {short} wasn't deleted\n")
    assert client.delete("/containers/dup").status_code == 204
    assert client.delete(f"/images/{short}").json() == [{"Deleted": short}]
    assert client.get("/images/json", params={"all": "1"}).json() == []
