"""What a request may carry, field by field, against what Docker does with it: every value
Docker accepts is accepted (through the API, and through today's docker CLI where it can send
it), and every value it refuses is refused with a 400 naming the field, leaving nothing made.
Where moorage refuses more than Docker, docs/security.md says why (a bind's host source)."""

from __future__ import annotations

import io
import tarfile

import pytest
from conftest import payloads

#: A certificate as `-e TLS_CERT="$(cat cert.pem)"` passes it: newlines and all.
PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ0VSVElGSUNBVEUxMjM0NTY3ODkwMAoGCCqGSM49BAMC\n"
       "MBQxEjAQBgNVBAMMCWxvY2FsaG9zdDAeFw0yNjAxMDEwMDAwMDBaFw0zNjAxMDEw\n-----END CERTIFICATE-----")

#: (field, value, what inspect shows of it) that Docker accepts at create.
ACCEPTED = [
    ("Env", ["SCRIPT=echo a\necho b"], None),
    ("Env", [f"PEM={PEM}"], None),
    ("Env", ["COLOR=\x1b[31mred\x1b[0m", "CR=a\rb", "TAB=a\tb"], None),
    ("Env", ["BARE"], None),  # no "=": Docker passes it, the process gets it empty
    ("Cmd", ["sh", "-c", "echo a\necho b"], None),
    ("Cmd", ["printf", "%s", "a\rb\x7f\x01"], None),
    ("Entrypoint", ["sh", "-c", "cat <<EOF\nheredoc\nEOF\n"], None),
    ("Hostname", "web-1.example.test", None),
    ("Hostname", "a" * 63, None),
    ("WorkingDir", "/a/../tmp", "/tmp"),
    ("WorkingDir", "/tmp/./x//y/", "/tmp/x/y"),
    ("Volumes", {"/data/../vol": {}}, {"/vol": {}}),
    ("User", "nobody", None),
    ("Domainname", "example.test", None),
    ("FieldNoDockerHas", {"x": 1}, None),  # unknown keys are ignored, as Go's decoder ignores them
    ("id", "deadbeef", None),
]

#: (field, value, words of the message) that Docker refuses too.
REFUSED = [
    ("Env", ["A=\x00"], "NUL"),
    ("Env", ["=value"], "environment"),
    ("Env", ["A=" + "x" * 131072], "longer than"),
    ("Cmd", ["echo", "a\x00b"], "NUL"),
    ("Entrypoint", ["sh\x00"], "NUL"),
    ("Hostname", "h\nx", "Hostname"),
    ("Hostname", "under_score", "Hostname"),
    ("Hostname", "-lead", "Hostname"),
    ("Hostname", "a" * 65, "Hostname"),
    ("WorkingDir", "/tmp\x00", "NUL"),
    ("Volumes", {"/": {}}, "volume path"),
    ("Volumes", {"/v\x00": {}}, "NUL"),
    ("User", "a\x00", "NUL"),
]


@pytest.fixture
def api(busybox_daemon):
    with busybox_daemon.client() as client:
        yield client


def containers_on_disk(daemon) -> list[str]:
    return sorted(p.name for p in (daemon.root / "containers").iterdir())


@pytest.mark.parametrize("field, value, shown", ACCEPTED, ids=lambda v: repr(v)[:30])
def test_docker_accepts_it_so_does_moorage(api, make, field, value, shown):
    cid = make(["true"], **{field: value})
    config = api.get(f"/containers/{cid}/json").json()["Config"]
    if field in config:
        assert config[field] == (value if shown is None else shown)


@pytest.mark.parametrize("field, value, words", REFUSED, ids=lambda v: repr(v)[:30])
def test_docker_refuses_it_so_does_moorage(busybox_daemon, api, field, value, words):
    before = containers_on_disk(busybox_daemon)
    answer = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"], field: value})
    assert answer.status_code == 400 and words in answer.text, answer.text
    assert containers_on_disk(busybox_daemon) == before


def test_refused_values_are_shown_escaped(api):
    answer = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"], "Hostname": "h\x1b[2Jx"})
    assert answer.status_code == 400 and "\\x1b" in answer.text and "\x1b" not in answer.text


def test_multi_line_script_runs_and_prints_its_lines(cli):
    assert cli("run", "--rm", "busybox", "sh", "-c", "echo a\necho b").stdout == "a\nb\n"
    assert cli("run", "--rm", "busybox", "sh", "-c", "cat <<EOF\nline 1\nline 2\nEOF").stdout == "line 1\nline 2\n"


def test_pem_in_env_arrives_byte_for_byte(cli, tmp_path):
    out = cli("run", "--rm", "-e", f"TLS_CERT={PEM}", "busybox", "sh", "-c", 'echo "$TLS_CERT"').stdout
    assert out == PEM + "\n"
    env_file = tmp_path / "env"
    env_file.write_text("ESC=\x1b[1mbold\x1b[0m\n")
    out = cli("run", "--rm", "--env-file", str(env_file), "busybox", "sh", "-c", 'echo "$ESC"').stdout
    assert out == "\x1b[1mbold\x1b[0m\n"


def test_paths_are_cleaned_as_docker_cleans_them(cli, tmp_path):
    (tmp_path / "f").write_text("bound\n")
    out = cli("run", "--rm", "-w", "/a/../tmp", "-v", f"{tmp_path}:/x/../bound", "busybox", "sh", "-c",
              "pwd; cat /bound/f").stdout
    assert out == "/tmp\nbound\n"
    assert cli("run", "--rm", "-h", "web-1.example.test", "busybox", "hostname").stdout == "web-1.example.test\n"


def test_a_bind_source_with_dotdot_is_still_refused(cli, tmp_path, busybox_daemon):
    """Refused beyond Docker (docs/security.md): a host path is used as given."""
    done = cli("run", "--rm", "-v", f"{tmp_path}/../{tmp_path.name}:/x", "busybox", "true", check=False)
    assert done.returncode != 0 and "'..'" in done.stderr


def test_start_ignores_keys_docker_does_not_know(api, make):
    """The 2013 DockerUI starts a container with ``{"id": "<container id>"}``."""
    cid = make(["sleep", "30"])
    answer = api.post(f"/containers/{cid}/start", json={"id": cid})
    assert answer.status_code == 204, answer.text
    assert api.get(f"/containers/{cid}/json").json()["State"]["Running"]


def test_a_known_field_moorage_cannot_honour_is_still_named(api, busybox_daemon):
    before = containers_on_disk(busybox_daemon)
    answer = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["true"], "Unknown": 1,
                                                   "HostConfig": {"PidsLimit": 10, "AlsoUnknown": True}})
    assert answer.status_code == 400 and "PidsLimit" in answer.text and "Unknown" not in answer.text
    assert containers_on_disk(busybox_daemon) == before


def test_copy_with_dotdot_stays_inside_the_container(api, make):
    """``..`` in copy's ``Resource`` is resolved inside the container's root, as in Docker: the
    container's ``/etc/passwd`` comes back, never the host's."""
    cid = make(["true"])
    for resource in ("../../etc/passwd", "etc/../../../passwd/../etc/passwd"):
        answer = api.post(f"/containers/{cid}/copy", json={"Resource": resource})
        assert answer.status_code == 200, answer.text
        with tarfile.open(fileobj=io.BytesIO(answer.content)) as tar:
            data = tar.extractfile("passwd").read()
        assert data != open("/etc/passwd", "rb").read() and b"root:" in data
    assert api.post(f"/containers/{cid}/copy", json={"Resource": "a\x00b"}).status_code == 400


def test_exec_and_commit_ignore_unknown_keys(api, make):
    cid = make(["sleep", "30"])
    assert api.post(f"/containers/{cid}/start").status_code == 204
    answer = api.post(f"/containers/{cid}/exec", json={"Cmd": ["sh", "-c", "echo a\necho b"], "AttachStdout": True,
                                                         "SomethingNew": {"x": 1}})
    assert answer.status_code == 201, answer.text
    exec_id = answer.json()["Id"]
    started = api.post(f"/exec/{exec_id}/start", json={"Detach": False, "Unknown": 1})
    assert started.status_code == 200
    assert payloads(started.content, (1,)) == b"a\nb\n", started.content
    image = api.post("/commit", params={"container": cid}, json={"Cmd": ["true"], "NotAField": 1})
    assert image.status_code == 201, image.text
    api.delete(f"/images/{image.json()['Id']}")


def test_auth_ignores_unknown_keys(api):
    body = {"username": "u", "password": "p", "serveraddress": "127.0.0.1:1", "identitytoken": "", "extra": 1}
    answer = api.post("/auth", json=body)
    # nothing listens there: the login fails on the connection, not on the body
    assert answer.status_code != 400 and "extra" not in answer.text, answer.text
