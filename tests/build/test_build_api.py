"""``POST /build`` through a real daemon over its unix socket (busybox image, overlay + native)."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from .helpers import build, built_id, container_ids, context_tar, dockerfile, run_in

STEP = re.compile(r"^Step (\d+) : ([A-Z]+) ?(.*)$")


def steps(text: str) -> list[list[str]]:
    """The output split per step: each item is the step line and the lines after it."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if STEP.match(line):
            out.append([line])
        elif line.startswith(("Successfully built", "Removing intermediate", "Error build")):
            return out
        elif out and not line.startswith("# Skipping"):
            out[-1].append(line)
    return out


def inspect_image(daemon, name: str) -> dict:
    with daemon.client() as client:
        answer = client.get(f"/images/{name}/json")
        assert answer.status_code == 200, answer.text
        return answer.json()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


EVERY_INSTRUCTION = (
    "# a comment, then a continued line",
    "FROM busybox",
    "MAINTAINER moorage tests <tests@example.com>",
    "ENV GREETING hello",
    "ENV TARGET /opt/${GREETING}",
    "ADD file.txt $TARGET/",
    "ADD tree /tree",
    "RUN mkdir -p /unpacked",
    "ADD archive.tar.gz /unpacked",
    "ADD {url} /downloaded/",
    "RUN echo ran-$GREETING > /ran.txt && \\",
    "    echo visible-output",
    "FROBNICATE please",
    "VOLUME /data",
    "EXPOSE 8080 53/udp",
    "WORKDIR /opt/hello",
    "USER daemon",
    'ENTRYPOINT ["/bin/sh", "-c"]',
    'CMD ["id -u; pwd; echo $GREETING; cat file.txt"]',
)


def every_instruction_context(url: str) -> bytes:
    return context_tar({
        "Dockerfile": dockerfile(*EVERY_INSTRUCTION).replace("{url}", url),
        "file.txt": "added file\n",
        "tree/": ("dir",),
        "tree/a.txt": "a\n",
        "tree/sub/b.sh": ("file", "#!/bin/sh\necho b\n", 0o755),
        "tree/link": ("symlink", "a.txt"),
        "archive.tar.gz": tar_bytes({"inside/x.txt": b"from the archive\n"}),
    })


@pytest.fixture
def served(http_dir):
    root, base = http_dir
    (root / "remote.txt").write_text("downloaded content\n")
    return root, base


def test_every_instruction_builds_and_the_image_runs(busybox_daemon, served):
    _, base = served
    answer = build(busybox_daemon, every_instruction_context(f"{base}/remote.txt"), t="build-every:v1")
    assert answer.status_code == 200, answer.text
    text = answer.text
    assert text.endswith(f"Successfully built {built_id(text)}\n")
    done = steps(text)
    assert [s[0].split(" : ")[1].split()[0] for s in done] == [
        "FROM", "MAINTAINER", "ENV", "ENV", "ADD", "ADD", "RUN", "ADD", "ADD", "RUN", "VOLUME", "EXPOSE",
        "WORKDIR", "USER", "ENTRYPOINT", "CMD"]
    assert [int(STEP.match(s[0]).group(1)) for s in done] == list(range(1, 17))
    assert "# Skipping unknown instruction FROBNICATE" in text
    for step in done:  # every step ends with the id of its image
        assert re.fullmatch(r" ---> [0-9a-f]{12}", step[-1]), step
    run_step = done[9]
    # Docker joined continued lines keeping the next line's indentation
    assert run_step[0] == "Step 10 : RUN echo ran-$GREETING > /ran.txt &&     echo visible-output"
    assert re.fullmatch(r" ---> Running in [0-9a-f]{12}", run_step[1])
    assert run_step[2] == "visible-output"
    assert all(len(s) == 2 for i, s in enumerate(done) if i not in (6, 9)), "metadata and ADD steps print no more"

    image = inspect_image(busybox_daemon, "build-every:v1")
    assert image["id"].startswith(built_id(text))
    assert image["author"] == "moorage tests <tests@example.com>"
    config = image["config"]
    assert config["Env"] == ["HOME=/", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                             "GREETING=hello", "TARGET=/opt/hello"]
    assert config["User"] == "daemon" and config["WorkingDir"] == "/opt/hello"
    assert config["Entrypoint"] == ["/bin/sh", "-c"]
    assert config["Cmd"] == ["id -u; pwd; echo $GREETING; cat file.txt"]
    assert config["PortSpecs"] == ["8080", "53/udp"]
    assert config["Volumes"] == {"/data": {}}
    nop = "#(nop) CMD [id -u; pwd; echo $GREETING; cat file.txt]"
    assert image["container_config"]["Cmd"] == ["/bin/sh", "-c", nop]

    code, output, info = run_in(busybox_daemon, "build-every:v1", None)
    assert code == 0, output
    assert output == "1\n/opt/hello\nhello\nadded file\n"
    assert set(info["Config"]["ExposedPorts"]) == {"8080/tcp", "53/udp"}
    assert "/data" in info["Volumes"]

    check = ("cat /ran.txt /tree/a.txt /tree/link; /tree/sub/b.sh; cat /unpacked/inside/x.txt; "
             "cat /downloaded/remote.txt; stat -c %a /downloaded/remote.txt; readlink /tree/link")
    code, output, _ = run_in(busybox_daemon, "build-every:v1", [check], User="root")
    assert code == 0, output
    assert output == "ran-hello\na\na\nb\nfrom the archive\ndownloaded content\n600\na.txt\n"


def test_second_build_hits_the_cache_and_nocache_misses(busybox_daemon, served):
    _, base = served
    body = every_instruction_context(f"{base}/remote.txt")
    first = build(busybox_daemon, body)
    assert first.status_code == 200, first.text
    second = build(busybox_daemon, body)
    assert second.status_code == 200, second.text
    assert built_id(second.text) == built_id(first.text)
    done = steps(second.text)
    assert all(s[1] == " ---> Using cache" for s in done[1:]), second.text
    assert "Running in" not in second.text

    third = build(busybox_daemon, body, nocache=1)
    assert third.status_code == 200, third.text
    assert "Using cache" not in third.text
    assert built_id(third.text) != built_id(first.text)


def test_add_is_cached_by_content(busybox_daemon):
    tag = uuid.uuid4().hex[:8]

    def context(content: str) -> bytes:
        return context_tar({"Dockerfile": dockerfile("FROM busybox", f"ENV MARK {tag}", "ADD data.txt /data.txt",
                                                     "RUN cat /data.txt"), "data.txt": content})

    first = build(busybox_daemon, context("one\n"))
    again = build(busybox_daemon, context("one\n"))
    changed = build(busybox_daemon, context("two\n"))
    for answer in (first, again, changed):
        assert answer.status_code == 200, answer.text
    assert "Using cache" not in first.text
    assert [len(s) for s in steps(again.text)] == [2, 3, 3, 3] and built_id(again.text) == built_id(first.text)
    changed_steps = steps(changed.text)
    assert changed_steps[1][1] == " ---> Using cache"  # the ENV before the ADD
    assert "Using cache" not in "\n".join(changed_steps[2] + changed_steps[3])
    assert "two" in changed_steps[3]


def test_failing_run_reports_the_exit_code(busybox_daemon):
    answer = build(busybox_daemon, context_tar({"Dockerfile": dockerfile("FROM busybox", "RUN echo before; exit 7",
                                                                          "CMD never")}))
    assert answer.status_code == 200
    assert answer.text.endswith("Error build: The command [/bin/sh -c echo before; exit 7] "
                                "returned a non-zero code: 7\n")
    assert "before\n" in answer.text and "Successfully built" not in answer.text


@pytest.mark.parametrize(("files", "message"), [
    ({"other": "x"}, "Can't build a directory with no Dockerfile"),
    ({"Dockerfile": ("symlink", "/etc/os-release")}, "Can't build a directory with no Dockerfile"),
    ({"../Dockerfile": "FROM busybox\n"}, "points outside the target directory"),
])
def test_bad_context_before_output_is_a_400(busybox_daemon, files, message):
    answer = build(busybox_daemon, context_tar(files))
    assert answer.status_code == 400
    assert message in answer.text


def test_errors_after_output_use_the_stream(busybox_daemon):
    cases = {
        # pulled from the test daemon's registry, a closed port on loopback
        "FROM no-such-image-here": "failed at 127.0.0.1:1: [Errno 111] Connection refused\n",
        "FROM busybox\nINSERT http://x /y": "Error build: INSERT has been deprecated. Please use ADD instead\n",
        "FROM busybox\nCOPY a /b": "Error build: a: no such file or directory\n",
        "FROM busybox\nBROKENLINE": "Error build: Dockerfile parse error line 2: Invalid Dockerfile format\n",
        "FROM busybox\nADD missing.txt /x": "Error build: missing.txt: no such file or directory\n",
        "FROM busybox\nENTRYPOINT []": "Error build: Entrypoint cannot be empty\n",
        "FROM busybox\nVOLUME []": "Error build: Volume cannot be empty\n",
        "MAINTAINER nobody": "Error build: Please provide a source image with `from` prior to commit\n",
    }
    for text, error in cases.items():
        answer = build(busybox_daemon, context_tar({"Dockerfile": text + "\n"}))
        assert answer.status_code == 200, answer.text
        assert answer.text.startswith("Step 1 : ") and answer.text.endswith(error), (text, answer.text)


def test_add_cannot_escape_the_context_or_the_container(busybox_daemon):
    forbidden = build(busybox_daemon, context_tar({"Dockerfile": "FROM busybox\nADD ../../etc/os-release /x\n"}))
    assert forbidden.text.endswith("Error build: Forbidden path: ../../etc/os-release\n"), forbidden.text

    marker = f"moorage-build-escape-{uuid.uuid4().hex[:8]}"
    host_target = Path("/etc") / marker
    body = context_tar({
        "Dockerfile": dockerfile("FROM busybox", "ADD absolute /absolute", "ADD relative /relative",
                                 "RUN ln -s /etc /escape && ln -s ../../../../etc /escape2",
                                 f"ADD file.txt /escape/{marker}", f"ADD file.txt /escape2/{marker}.2"),
        "etc/os-release": "the context's own copy\n",
        "absolute": ("symlink", "/etc/os-release"),
        "relative": ("symlink", "../../../../../etc/os-release"),
        "file.txt": "stays inside\n",
    })
    answer = build(busybox_daemon, body)
    assert answer.status_code == 200 and "Successfully built" in answer.text, answer.text
    assert not host_target.exists() and not Path(f"{host_target}.2").exists()
    code, output, _ = run_in(busybox_daemon, built_id(answer.text),
                             ["/bin/sh", "-c", f"cat /absolute /relative /etc/{marker} /etc/{marker}.2"])
    assert code == 0, output
    assert output == "the context's own copy\nthe context's own copy\nstays inside\nstays inside\n"


def test_hostile_archive_added_cannot_escape(busybox_daemon):
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../../../../tmp/moorage-escaped")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    body = context_tar({"Dockerfile": "FROM busybox\nADD evil.tar /tmp\n", "evil.tar": evil.getvalue()})
    answer = build(busybox_daemon, body)
    assert "Error build:" in answer.text and "outside the target directory" in answer.text, answer.text
    assert not Path("/tmp/moorage-escaped").exists()


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_compressed_contexts(busybox_daemon, compression):
    body = context_tar({"Dockerfile": "FROM busybox\nADD a /a\n", "a": compression}, compression)
    answer = build(busybox_daemon, body, q=1)
    assert answer.status_code == 200 and "Successfully built" in answer.text, answer.text


def test_quiet_hides_run_output(busybox_daemon):
    body = context_tar({"Dockerfile": f"FROM busybox\nRUN echo quiet-{uuid.uuid4().hex}\n"})
    answer = build(busybox_daemon, body, q=1)
    assert "Running in" in answer.text and "quiet-" not in answer.text.split("Running in")[1]


def test_tag_names_the_result(busybox_daemon):
    body = context_tar({"Dockerfile": f"FROM busybox\nENV X {uuid.uuid4().hex}\n"})
    answer = build(busybox_daemon, body, t="build-tagged")
    assert inspect_image(busybox_daemon, "build-tagged:latest")["id"].startswith(built_id(answer.text))
    again = build(busybox_daemon, context_tar({"Dockerfile": "FROM busybox\nENV Y 1\n"}), t="build-tagged")
    assert inspect_image(busybox_daemon, "build-tagged")["id"].startswith(built_id(again.text))
    bad = build(busybox_daemon, body, t="http://not-a-repository")
    assert bad.status_code == 400  # a bad name is the client's error (500 in Docker 0.6)


def test_rm_removes_intermediate_containers(busybox_daemon):
    dockerfile_text = f"FROM busybox\nRUN echo {uuid.uuid4().hex}\nADD f /f\nRUN true\nCMD x\n"
    body = context_tar({"Dockerfile": dockerfile_text, "f": "f"})
    before = container_ids(busybox_daemon)
    answer = build(busybox_daemon, body, rm=1)
    assert answer.status_code == 200, answer.text
    removed = re.findall(r"^Removing intermediate container ([0-9a-f]{12})$", answer.text, re.M)
    assert len(removed) == 3
    assert answer.text.index("Successfully built") < answer.text.index("Removing intermediate")
    assert container_ids(busybox_daemon) == before

    kept = build(busybox_daemon, body, nocache=1)
    made = container_ids(busybox_daemon) - before
    assert len(made) == 3 and "Removing" not in kept.text


def test_from_inherits_the_base_config(busybox_daemon):
    base = build(busybox_daemon, context_tar({"Dockerfile": "FROM busybox\nENV BASE yes\nCMD echo from-base\n"}),
                 t="build-base")
    assert base.status_code == 200, base.text
    child = build(busybox_daemon, context_tar({"Dockerfile": "FROM build-base\nRUN echo $BASE > /base.txt\n"}))
    assert child.status_code == 200, child.text
    config = inspect_image(busybox_daemon, built_id(child.text))["config"]
    assert config["Cmd"] == ["/bin/sh", "-c", "echo from-base"]
    assert "BASE=yes" in config["Env"]
    code, output, _ = run_in(busybox_daemon, built_id(child.text), ["cat", "/base.txt"])
    assert output == "yes\n"


def test_run_ignores_the_entrypoint_and_keeps_it(busybox_daemon):
    body = context_tar({"Dockerfile": 'FROM busybox\nENTRYPOINT ["/bin/false"]\nRUN echo ran > /r\n'})
    answer = build(busybox_daemon, body)
    assert answer.status_code == 200 and "Successfully built" in answer.text, answer.text
    image = inspect_image(busybox_daemon, built_id(answer.text))
    assert image["config"]["Entrypoint"] == ["/bin/false"]


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture
def git_repo(tmp_path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text("FROM busybox\nADD hello.txt /hello.txt\nRUN cat /hello.txt\n")
    (repo / "hello.txt").write_text(f"from git {uuid.uuid4().hex}\n")
    git("init", "-q", cwd=repo)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "context", cwd=repo)
    return repo


def test_remote_git_file_url(busybox_daemon, git_repo):
    answer = build(busybox_daemon, remote=f"file://{git_repo}")
    assert answer.status_code == 200, answer.text
    assert "from git" in answer.text and "Successfully built" in answer.text


def test_remote_git_over_http(busybox_daemon, git_repo, http_dir):
    root, base = http_dir
    subprocess.run(["git", "clone", "-q", "--bare", str(git_repo), str(root / "repo.git")], check=True)
    subprocess.run(["git", "update-server-info"], cwd=root / "repo.git", check=True)
    answer = build(busybox_daemon, remote=f"{base}/repo.git")
    assert answer.status_code == 200, answer.text
    assert "from git" in answer.text and "Successfully built" in answer.text


def test_remote_git_failure_is_a_500(busybox_daemon, tmp_path):
    answer = build(busybox_daemon, remote=f"file://{tmp_path}/not-a-repo")
    assert answer.status_code == 500 and "Error trying to use git" in answer.text


def test_remote_http_dockerfile(busybox_daemon, http_dir):
    root, base = http_dir
    (root / "Dockerfile").write_text(f"FROM busybox\nRUN echo remote-{uuid.uuid4().hex[:6]}\n")
    answer = build(busybox_daemon, remote=f"{base}/Dockerfile")
    assert answer.status_code == 200, answer.text
    assert "remote-" in answer.text and "Successfully built" in answer.text


def test_old_api_versions_are_refused(busybox_daemon):
    with busybox_daemon.client() as client:
        answer = client.post("/v1.2/build", content=context_tar({"Dockerfile": "FROM busybox\n"}))
    assert answer.status_code == 500
    assert answer.text == "Multipart upload for build is no longer supported. Please upgrade your docker client.\n"


def test_output_is_streamed_as_it_is_written(busybox_daemon):
    """The RUN below never ends by itself: the test can only kill it because it has already
    received the output written before it."""
    body = context_tar({"Dockerfile": "FROM busybox\nRUN echo waiting; sleep 600\n"})
    with busybox_daemon.client(timeout=120) as client, \
            client.stream("POST", "/build", params={"nocache": 1}, content=body) as answer:
        assert answer.status_code == 200
        lines = answer.iter_lines()
        seen = []
        for line in lines:
            seen.append(line)
            if line == "waiting":
                break
        running = [line for line in seen if line.startswith(" ---> Running in ")]
        assert running, seen
        assert client.post(f"/containers/{running[0].split()[-1]}/kill").status_code == 204
        rest = list(lines)
    assert rest[-1] == "Error build: The command [/bin/sh -c echo waiting; sleep 600] returned a non-zero code: 137"


def test_builds_leave_no_mounts_or_scratch_files(busybox_daemon):
    """Runs last in this module: every build above has ended, and none left a layer mounted or
    a context or download behind (what a killed daemon's build left is swept when the daemon
    starts again: test_interrupted_build.py)."""
    body = context_tar({"Dockerfile": "FROM busybox\nADD f /f\nRUN cat /f\n", "f": uuid.uuid4().hex})
    assert "Successfully built" in build(busybox_daemon, body).text
    assert "Error build" in build(busybox_daemon, context_tar({"Dockerfile": "FROM busybox\nRUN false\n"})).text
    root = str(busybox_daemon.root.resolve())
    with open("/proc/self/mounts") as f:
        mounted = [line.split()[1] for line in f if line.split()[1].startswith(root + "/")]
    assert mounted == []
    assert list((busybox_daemon.root / "builder").iterdir()) == []

