"""The container lifecycle through the API, over the daemon's real unix socket, with requests
shaped as the reference describes (the docker-py tests drive the same daemon with a client)."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import time
import uuid

import pytest
from conftest import eventually, frames


@pytest.fixture
def api(busybox_daemon):
    with busybox_daemon.client() as client:
        yield client




def run(api, make, cmd, **config) -> tuple[str, int]:
    cid = make(cmd, **config)
    started = api.post(f"/containers/{cid}/start")
    assert started.status_code == 204, started.text
    return cid, api.post(f"/containers/{cid}/wait").json()["StatusCode"]


def logs(api, cid, **params) -> bytes:
    query = {"logs": 1, "stdout": 1, "stderr": 1, **params}
    return api.post(f"/containers/{cid}/attach", params=query).content


def start_when_trapped(api, make, trap: str) -> str:
    """A started shell loop that has installed ``trap`` (it prints ``trapped`` after): a signal
    sent before the shell got that far would meet the default action, not the trap."""
    cid = make(["/bin/sh", "-c", f"{trap}; echo trapped; while true; do sleep 0.1; done"])
    assert api.post(f"/containers/{cid}/start").status_code == 204
    eventually(lambda: b"trapped" in logs(api, cid), "the shell to install its trap")
    return cid


def test_create_answers_short_id_and_inspect_has_every_field(api, make, busybox_daemon):
    cid = make(["/bin/true"], name="inspected", Env=["A=1"])
    assert len(cid) == 12
    data = api.get(f"/containers/{cid}/json").json()
    assert list(data) == ["ID", "Created", "Path", "Args", "Config", "State", "Image", "NetworkSettings",
                          "SysInitPath", "ResolvConfPath", "HostnamePath", "HostsPath", "Name", "Volumes",
                          "VolumesRW", "Driver", "HostConfig"]  # HostConfig: beyond 1.6 (docs/api.md)
    assert data["ID"].startswith(cid) and len(data["ID"]) == 64
    assert data["Path"] == "/bin/true" and data["Args"] == []
    assert data["Name"] == "/inspected"
    assert data["Config"]["Hostname"] == cid and data["Config"]["Env"] == ["A=1"]
    assert data["State"] == {"Running": False, "Pid": 0, "ExitCode": 0, "StartedAt": "0001-01-01T00:00:00Z",
                             "FinishedAt": "0001-01-01T00:00:00Z", "Ghost": False,
                             "Paused": False}  # Paused: beyond 1.6 (docs/api.md)
    assert data["Image"].startswith(busybox_daemon.image_id)
    assert set(data["NetworkSettings"]) == {"IPAddress", "IPPrefixLen", "Gateway", "Bridge", "PortMapping", "Ports"}
    # lookups: by name, with or without the slash, and by id prefix
    for ref in ("inspected", "/inspected", cid[:6], data["ID"]):
        assert api.get(f"/containers/{ref}/json").json()["ID"] == data["ID"]


def test_create_errors(api, make):
    make(["/bin/true"], name="taken")
    cases = [
        ({"Image": "nope", "Cmd": ["x"]}, None, 404, "No such image: nope (tag: latest)\n"),
        ({"Image": "busybox", "Cmd": ["x"]}, "taken", 409, "Conflict, /taken already exists.\n"),
        ({"Image": "busybox"}, None, 400, "No command specified\n"),
        ({"Image": "busybox", "Cmd": ["x"], "Memory": 524287}, None, 400,
         "Memory limit must be given in bytes (minimum 524288 bytes)\n"),
        ({"Image": "busybox", "Cmd": "not a list"}, None, 400, "Bad parameter: Cmd must be a list of strings\n"),
    ]
    before = len(api.get("/containers/json", params={"all": 1}).json())
    for body, name, status, message in cases:
        response = api.post("/containers/create", json=body, params={"name": name} if name else None)
        assert (response.status_code, response.text) == (status, message)
    bad_json = api.post("/containers/create", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400
    assert len(api.get("/containers/json", params={"all": 1}).json()) == before  # nothing half-made


def test_keys_are_matched_case_insensitively(api, make):
    cid = api.post("/containers/create", json={"image": "busybox", "cmd": ["/bin/echo", "hi"],
                                               "workingdir": "/tmp"}).json()["Id"]
    config = api.get(f"/containers/{cid}/json").json()["Config"]
    assert config["Cmd"] == ["/bin/echo", "hi"] and config["WorkingDir"] == "/tmp"
    api.delete(f"/containers/{cid}")


def test_exit_codes_signals_and_command_not_found(api, make):
    assert run(api, make, ["/bin/true"])[1] == 0
    assert run(api, make, ["/bin/false"])[1] == 1
    assert run(api, make, ["/bin/sh", "-c", "exit 42"])[1] == 42
    assert run(api, make, ["/no/such/command"])[1] == 127
    cid = make(["/bin/sleep", "60"])
    api.post(f"/containers/{cid}/start")
    assert api.post(f"/containers/{cid}/kill", params={"signal": "9"}).status_code == 204
    assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 137}


def test_output_env_user_workdir_hostname(api, make):
    cid, code = run(api, make, ["/bin/sh", "-c", "env; id -u; id -g; pwd; hostname; echo err >&2"],
                    User="daemon", WorkingDir="/work/dir", Hostname="box", Env=["FOO=bar"])
    assert code == 0
    out = frames(logs(api, cid))
    stdout = b"".join(d for k, d in out if k == 1).decode()
    stderr = b"".join(d for k, d in out if k == 2).decode()
    lines = stdout.splitlines()
    env = {line.split("=", 1)[0] for line in lines if "=" in line}
    assert {"HOME", "PATH", "HOSTNAME", "FOO"} <= env
    assert "FOO=bar" in lines and "HOSTNAME=box" in lines
    assert lines[-4:] == ["1", "1", "/work/dir", "box"]
    assert stderr == "err\n"
    only_err = frames(logs(api, cid, stdout=0))
    assert only_err == [(2, b"err\n")]


def test_unknown_user_fails_start_and_leaves_it_stopped(api, make):
    cid = make(["/bin/true"], User="nobody-here")
    response = api.post(f"/containers/{cid}/start")
    assert response.status_code == 400 and "nobody-here" in response.text
    state = api.get(f"/containers/{cid}/json").json()["State"]
    assert state["Running"] is False
    assert api.delete(f"/containers/{cid}").status_code == 204


def test_list_status_command_and_filters(api, make):
    first = make(["/bin/true"])
    second = make(["/bin/sleep", "30"])
    third = make(["date"])
    api.post(f"/containers/{second}/start")
    running = api.get("/containers/json").json()
    assert [r["Id"][:12] for r in running if r["Id"][:12] in (first, second, third)] == [second]
    row = running[[r["Id"][:12] for r in running].index(second)]
    assert row["Status"].startswith("Up ") and row["Command"] == "/bin/sleep 30"
    assert row["Ports"] is None and row["Names"][0].startswith("/")
    everything = [r["Id"][:12] for r in api.get("/containers/json", params={"all": 1}).json()]
    assert everything.index(third) < everything.index(second) < everything.index(first)  # newest first
    rows = {r["Id"][:12]: r for r in api.get("/containers/json", params={"all": 1}).json()}
    assert rows[third]["Command"] == "date " and rows[first]["Status"] == "Exit 0"
    assert [r["Id"][:12] for r in api.get("/containers/json", params={"limit": 1}).json()] == [everything[0]]
    assert api.get("/containers/json", params={"limit": 0}).json() == []
    assert third not in [r["Id"][:12] for r in api.get("/containers/json", params={"before": third}).json()]
    assert [r["Id"][:12] for r in api.get("/containers/json", params={"since": second}).json()][-1] == third
    sized = api.get("/containers/json", params={"all": 1, "size": 1}).json()
    assert all(isinstance(r["SizeRw"], int) for r in sized)
    assert api.get("/containers/json", params={"all": "maybe"}).status_code == 400
    assert api.get("/v1.4/containers/json").json()[0]["Ports"] == ""  # the pre-1.5 string form


def test_stop_restart_kill(api, make):
    cid = start_when_trapped(api, make, "trap 'exit 7' TERM")
    assert api.post(f"/containers/{cid}/stop", params={"t": 5}).status_code == 204
    assert api.get(f"/containers/{cid}/json").json()["State"]["ExitCode"] == 7
    assert api.post(f"/containers/{cid}/restart", params={"t": 1}).status_code == 204
    assert api.get(f"/containers/{cid}/json").json()["State"]["Running"] is True
    second = api.post(f"/containers/{cid}/start")
    assert second.status_code == 500 and "is already running" in second.text
    assert api.post(f"/containers/{cid}/kill").status_code == 204
    state = api.get(f"/containers/{cid}/json").json()["State"]
    assert state["Running"] is False and state["ExitCode"] == 137
    assert api.post(f"/containers/{cid}/stop").status_code == 204  # stopping a stopped one is a no-op
    ignores_term = start_when_trapped(api, make, "trap '' TERM")
    assert api.post(f"/containers/{ignores_term}/stop", params={"t": 1}).status_code == 204
    assert api.get(f"/containers/{ignores_term}/json").json()["State"]["ExitCode"] == 137
    assert api.post(f"/containers/{cid}/kill", params={"signal": "SIGBOGUS"}).status_code == 400


def test_remove_rules(api, make):
    cid = make(["/bin/sleep", "30"])
    api.post(f"/containers/{cid}/start")
    response = api.delete(f"/containers/{cid}")
    assert response.status_code == 406
    assert response.text == "Impossible to remove a running container, please stop it first\n"
    api.post(f"/containers/{cid}/kill")
    assert api.delete(f"/containers/{cid}").status_code == 204
    assert api.get(f"/containers/{cid}/json").status_code == 404
    assert api.delete(f"/containers/{cid}").text == f"No such container: {cid}\n"


def test_changes_export_copy_top_commit(api, make):
    cid, code = run(api, make, ["/bin/sh", "-c", "rm /etc/passwd; mkdir /new; echo data > /new/file"])
    assert code == 0
    changes = {c["Path"]: c["Kind"] for c in api.get(f"/containers/{cid}/changes").json()}
    assert changes["/etc/passwd"] == 2 and changes["/new"] == 1 and changes["/new/file"] == 1
    assert changes["/etc"] == 0
    assert "/etc/hosts" not in changes and "/proc" not in changes  # init-layer paths are left out
    untouched, _ = run(api, make, ["/bin/true"])
    assert api.get(f"/containers/{untouched}/changes").json() is None

    export = tarfile.open(fileobj=io.BytesIO(api.get(f"/containers/{cid}/export").content))
    names = export.getnames()
    assert "./new/file" in names and "./bin/busybox" in names and "./etc/passwd" not in names

    copied = api.post(f"/containers/{cid}/copy", json={"Resource": "/new"})
    assert copied.status_code == 200
    tar = tarfile.open(fileobj=io.BytesIO(copied.content))
    assert sorted(tar.getnames()) == ["new", "new/file"]
    assert tar.extractfile("new/file").read() == b"data\n"
    assert api.post(f"/containers/{cid}/copy", content=b'{"Resource":"/new"}',
                    headers={"Content-Type": "application/json; charset=utf-8"}).status_code == 400
    assert api.post(f"/containers/{cid}/copy", json={"Resource": "/nothing"}).status_code == 404
    linker, code = run(api, make, ["/bin/sh", "-c", "ln -s / /esc; ln -s /etc /etc-link"])
    for resource in ("/esc/etc/hostname", "/etc-link/hostname"):
        through = api.post(f"/containers/{linker}/copy", json={"Resource": resource})
        assert through.status_code == 200, through.text  # absolute links resolve inside the container
        assert tarfile.open(fileobj=io.BytesIO(through.content)).extractfile("hostname").read() == b""
    link = tarfile.open(fileobj=io.BytesIO(api.post(f"/containers/{linker}/copy", json={"Resource": "/esc"}).content))
    assert [(m.name, m.issym(), m.linkname) for m in link.getmembers()] == [("esc", True, "/")]
    # `..` is resolved inside the container's root, as Docker resolves it: the container's file
    escape = api.post(f"/containers/{cid}/copy", json={"Resource": "/../../../../etc/hostname"})
    assert escape.status_code == 200, escape.text
    assert tarfile.open(fileobj=io.BytesIO(escape.content)).extractfile("hostname").read() == b""

    committed = api.post("/commit", params={"container": cid, "repo": "committed", "tag": "t1", "author": "me"},
                         json={"Cmd": ["/bin/cat", "/new/file"]})
    assert committed.status_code == 201 and len(committed.json()["Id"]) == 12
    image = api.get("/images/committed:t1/json").json()
    assert image["author"] == "me" and image["container"].startswith(cid)
    assert image["config"]["Cmd"] == ["/bin/cat", "/new/file"]
    child = api.post("/containers/create", json={"Image": "committed:t1"}).json()["Id"]
    api.post(f"/containers/{child}/start")
    assert api.post(f"/containers/{child}/wait").json()["StatusCode"] == 0
    assert frames(logs(api, child)) == [(1, b"data\n")]
    api.delete(f"/containers/{child}")
    api.delete("/images/committed:t1")

    sleeper = make(["/bin/sh", "-c", "sleep 30"])
    api.post(f"/containers/{sleeper}/start")
    top = api.get(f"/containers/{sleeper}/top", params={"ps_args": "-o pid,args"}).json()
    assert top["Titles"] == ["PID", "COMMAND"]
    commands = [p[-1] for p in top["Processes"]]
    assert any("sleep 30" in c for c in commands) and len(commands) >= 1
    assert api.get(f"/v1.3/containers/{sleeper}/top").status_code == 500


def raw_attach(busybox_daemon, cid: str, query: str, stdin: bytes = b"", upgrade: bool = False,
               wait_for: bytes = b"") -> bytes:
    """The 0.6 client's attach: no body, no Upgrade header, stdin, then a half-close (after
    ``wait_for`` has come back, when given)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(20)
    s.connect(str(busybox_daemon.sock))
    extra = "Connection: Upgrade\r\nUpgrade: tcp\r\n" if upgrade else ""
    s.sendall(f"POST /v1.6/containers/{cid}/attach?{query} HTTP/1.1\r\nHost: x\r\n"
              f"Content-Type: plain/text\r\nContent-Length: 0\r\n{extra}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    if stdin:
        s.sendall(stdin)
    while wait_for and wait_for not in data.partition(b"\r\n\r\n")[2]:
        data += s.recv(4096)
    s.shutdown(socket.SHUT_WR)
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    return data


def test_attach_stdin_round_trip_like_the_old_client(api, make, busybox_daemon):
    cid = make(["/bin/cat"], OpenStdin=True, StdinOnce=True)
    api.post(f"/containers/{cid}/start")
    data = raw_attach(busybox_daemon, cid, "stream=1&stdin=1&stdout=1&stderr=1", b"hello\n")
    head, _, body = data.partition(b"\r\n\r\n")
    assert head == b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.raw-stream"
    assert body == b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n"
    assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0  # stdin closed: cat saw EOF


def test_attach_stderr_frames_and_upgrade(api, make, busybox_daemon):
    cid = make(["/bin/sh", "-c", "cat >&2"], OpenStdin=True, StdinOnce=True)
    api.post(f"/containers/{cid}/start")
    data = raw_attach(busybox_daemon, cid, "stream=1&stdin=1&stdout=1&stderr=1", b"oops\n", upgrade=True)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 UPGRADED")
    assert frames(body) == [(2, b"oops\n")]


def test_attach_tty_is_raw_and_detach_keeps_process(api, make, busybox_daemon):
    cid = make(["/bin/cat"], OpenStdin=True, Tty=True)
    api.post(f"/containers/{cid}/start")
    data = raw_attach(busybox_daemon, cid, "stream=1&stdin=1&stdout=1", b"abc\n", wait_for=b"abc")
    body = data.partition(b"\r\n\r\n")[2]
    assert b"abc" in body and not body.startswith(b"\x01\x00\x00\x00")
    assert api.get(f"/containers/{cid}/json").json()["State"]["Running"] is True  # half-close only detached


def answered_attach(busybox_daemon, cid: str, query: str) -> tuple[socket.socket, bytes]:
    """An attach whose answer (status and headers) has come, and nothing of its stream read."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(60)  # a stream that never ends fails the test (TimeoutError)
    s.connect(str(busybox_daemon.sock))
    s.sendall(f"POST /v1.6/containers/{cid}/attach?{query} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    return s, data


def test_an_attach_answered_before_a_start_gets_that_run_however_quickly_it_ends(api, make, busybox_daemon):
    """Today's docker CLI attaches, and starts the container once the attach is answered. A run
    that starts and ends before the attach has found its stream must still reach it: here the
    attach (``logs=1&stream=1``) replays a long previous run that the client does not read yet,
    so the replay blocks on the full socket while the next run starts and ends. (The attach used
    to look for a running container only after its replay, then wait for a next start that never
    came: ``docker run --rm`` hung under load.)"""
    lines = 50_000  # its frames (750 kB) fill the socket's buffers several times over
    cid = make(["/bin/sh", "-c", f"if [ -e /ran ]; then echo second; else touch /ran; seq 1 {lines}; fi"])
    assert api.post(f"/containers/{cid}/start").status_code == 204
    assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0
    s, data = answered_attach(busybox_daemon, cid, "logs=1&stream=1&stdout=1")
    assert api.post(f"/containers/{cid}/start").status_code == 204
    assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0  # the second run is over
    while chunk := s.recv(1 << 20):  # a daemon with the old order never ends this stream
        data += chunk
    s.close()
    output = b"".join(payload for _, payload in frames(data.partition(b"\r\n\r\n")[2])).decode()
    assert output.splitlines() == [str(n) for n in range(1, lines + 1)] + ["second"]


def test_an_attach_waiting_for_a_start_that_fails_ends(api, make, busybox_daemon):
    """The client is told by the start's error; its attach must not wait on for a run that did
    not happen (today's docker CLI waits for its attach to end before it exits)."""
    cid = make(["/bin/echo", "hi"])
    s, data = answered_attach(busybox_daemon, cid, "stream=1&stdout=1")
    missing = f"/nonexistent-{uuid.uuid4().hex}"
    failed = api.post(f"/containers/{cid}/start", json={"Binds": [f"{missing}:/data"]})
    assert failed.status_code >= 400 and missing in failed.text
    while chunk := s.recv(65536):  # TimeoutError if the attach waits on
        data += chunk
    s.close()
    assert data.partition(b"\r\n\r\n")[2] == b""
    assert api.post(f"/containers/{cid}/start", json={"Binds": []}).status_code == 204  # and it still starts


def test_attach_unknown_container_is_a_plain_404(busybox_daemon, api):
    response = api.post("/containers/nope/attach", params={"stream": 1})
    assert response.status_code == 404 and response.text == "No such container: nope\n"


def test_logs_keep_only_complete_lines_and_every_run(api, make):
    cid, _ = run(api, make, ["/bin/sh", "-c", "echo one; printf partial"])
    api.post(f"/containers/{cid}/start")
    api.post(f"/containers/{cid}/wait")
    assert frames(logs(api, cid)) == [(1, b"one\n"), (1, b"one\n")]


def test_binds_and_volumes(api, make, tmp_path):
    (tmp_path / "hostfile").write_text("from the host\n")
    cid = make(["/bin/sh", "-c", "cat /data/hostfile; echo new > /data/written; touch /ro/x || echo ro-refused"],
               Volumes={"/data": {}, "/ro": {}, "/scratch": {}})
    (tmp_path / "ro").mkdir()
    response = api.post(f"/containers/{cid}/start",
                        json={"Binds": [f"{tmp_path}:/data", f"{tmp_path / 'ro'}:/ro:ro"]})
    assert response.status_code == 204, response.text
    assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0
    stdout = b"".join(d for k, d in frames(logs(api, cid)) if k == 1)
    assert stdout == b"from the host\nro-refused\n"
    assert (tmp_path / "written").read_text() == "new\n"
    data = api.get(f"/containers/{cid}/json").json()
    assert data["Volumes"]["/data"] == str(tmp_path) and data["VolumesRW"] == {"/data": True, "/ro": False,
                                                                                "/scratch": True}
    bad = make(["/bin/true"], Volumes={"/x": {}})
    for binds, message in ((["/does/not/exist:/x"], "source doesn't exist"),
                           (["relative:/x"], "absolute"), (["a:b:c:d"], "Invalid bind specification"),
                           ([f"{tmp_path}:/"], "Illegal bind destination")):
        response = api.post(f"/containers/{bad}/start", json={"Binds": binds})
        assert response.status_code == 400 and message in response.text
    assert api.get(f"/containers/{bad}/json").json()["State"]["Running"] is False


def test_events_of_a_lifecycle(api, make, busybox_daemon):
    since = int(time.time()) - 1
    cid = make(["/bin/sleep", "30"])
    api.post(f"/containers/{cid}/start")
    api.post(f"/containers/{cid}/stop", params={"t": 1})
    api.delete(f"/containers/{cid}")
    statuses = []
    with busybox_daemon.client() as client, client.stream("GET", "/events", params={"since": since}) as response:
        decoder, buffer = json.JSONDecoder(), ""
        for text in response.iter_text():
            buffer += text
            while buffer:
                try:
                    event, end = decoder.raw_decode(buffer)
                except ValueError:
                    break
                buffer = buffer[end:]
                if event["id"] == cid:
                    assert event["from"] == "busybox:latest"
                    statuses.append(event["status"])
            if "destroy" in statuses:
                break
    assert statuses == ["create", "start", "die", "stop", "destroy"]


def test_link_removal_rules(api, make):
    make(["/bin/true"], name="linkparent")
    assert api.delete("/containers/linkparent", params={"link": 1}).status_code == 409
    assert api.delete("/containers/linkparent/nope", params={"link": 1}).status_code == 404


def test_attach_websocket_carries_stdin_and_output_unframed(api, make, busybox_daemon):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import unix_connect

    cid = make(["/bin/sh", "-c", "read x; echo out $x; echo err $x >&2"], OpenStdin=True)
    api.post(f"/containers/{cid}/start")
    url = f"ws://moorage/v1.6/containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1&stderr=1"
    received = b""
    with unix_connect(str(busybox_daemon.sock), url) as ws:
        ws.send(b"hi\n")
        while received.count(b"\n") < 2:
            received += ws.recv(timeout=10)
    assert sorted(received.splitlines()) == [b"err hi", b"out hi"]  # no frame headers
    with pytest.raises(InvalidStatus) as info, unix_connect(str(busybox_daemon.sock), "ws://moorage/containers/nope/attach/ws"):
        pass
    assert info.value.response.status_code == 404


def test_insert_downloads_a_file_into_a_new_image(api, make, tmp_path):
    import functools
    import http.server
    import threading

    (tmp_path / "payload.txt").write_text("inserted\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/payload.txt"
    try:
        response = api.post("/images/busybox/insert", params={"url": url, "path": "/opt/payload.txt"})
        messages = [json.loads(x) for x in response.text.replace("}{", "}\n{").splitlines()]
        assert messages[-1]["status"] and len(messages[-1]["status"]) == 64, messages
        image = api.get(f"/images/{messages[-1]['status']}/json").json()
        assert "config" not in image and image["container_config"]["Cmd"] == ["echo", "insert", url,
                                                                              "/opt/payload.txt"]
        cid = api.post("/containers/create", json={"Image": messages[-1]["status"],
                                                   "Cmd": ["/bin/cat", "/opt/payload.txt"]}).json()["Id"]
        api.post(f"/containers/{cid}/start")
        assert api.post(f"/containers/{cid}/wait").json()["StatusCode"] == 0
        assert frames(logs(api, cid)) == [(1, b"inserted\n")]
        api.delete(f"/containers/{cid}")
        again = api.post(f"/images/{messages[-1]['status']}/insert", params={"url": url, "path": "/opt/payload.txt"})
        assert "/opt/payload.txt exists" in again.text
        assert api.post("/images/nope/insert", params={"url": url, "path": "/x"}).status_code == 404
        api.delete(f"/images/{messages[-1]['status']}")
    finally:
        server.shutdown()


def test_ambiguous_prefix_is_not_found(api, make):
    ids = [api.get(f"/containers/{make(['/bin/true'])}/json").json()["ID"] for _ in range(17)]
    first = sorted(ids)  # 17 ids over 16 hex digits: two share their first digit
    prefix = next(a[0] for a, b in zip(first, first[1:], strict=False) if a[0] == b[0])
    response = api.get(f"/containers/{prefix}/json")
    assert response.status_code == 404 and response.text == f"No such container: {prefix}\n"
