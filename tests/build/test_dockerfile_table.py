"""Dockerfiles, 0.6.5's and today's, built through ``POST /build``: the image configs they give."""

from __future__ import annotations

import json
import uuid

import pytest

from .helpers import build, built_id, context_tar, dockerfile, run_in

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: (Dockerfile lines, build args, expected config fields); Ports: the keys of the ports exposed
TABLE = [
    pytest.param(["FROM busybox", "ENV GREETING hello", 'ENV QUOTED "kept as 0.6.5 did"', "ENV REF $GREETING/x"],
                 {}, {"Env": ["HOME=/", PATH, "GREETING=hello", 'QUOTED="kept as 0.6.5 did"', "REF=hello/x"]},
                 id="0.6.5-env"),
    pytest.param(["FROM busybox", "ENV B=1", 'ENV k=v k2="v 2" k3=a\\ b', "ENV C=${B}0 D=${NOPE:-dflt}"], {},
                 {"Env": ["HOME=/", PATH, "B=1", "k=v", "k2=v 2", "k3=a b", "C=10", "D=dflt"]}, id="env-k=v"),
    pytest.param(["FROM busybox", "ENV A=1 B=$A"], {}, {"Env": ["HOME=/", PATH, "A=1", "B="]},
                 id="env-sees-the-env-before-it"),
    pytest.param(["FROM busybox", "CMD echo hi", "ENTRYPOINT /bin/echo"], {},
                 {"Cmd": ["/bin/sh", "-c", "echo hi"], "Entrypoint": ["/bin/sh", "-c", "/bin/echo"]},
                 id="0.6.5-shell-forms"),
    pytest.param(["FROM busybox", 'CMD ["echo", "hi"]', 'ENTRYPOINT ["/bin/sh", "-c"]'], {},
                 {"Cmd": ["echo", "hi"], "Entrypoint": ["/bin/sh", "-c"]}, id="exec-forms"),
    pytest.param(["FROM busybox", "ARG DIR=/srv", "ARG PORT", "WORKDIR $DIR", "WORKDIR app", "WORKDIR ${SUB:-sub}",
                  "USER 1000:1000", "EXPOSE $PORT 53/udp", "VOLUME $DIR/data /cache", 'VOLUME ["/json"]'],
                 {"PORT": "8080"},
                 {"WorkingDir": "/srv/app/sub", "User": "1000:1000", "Ports": {"8080/tcp", "53/udp"},
                  "Volumes": {"/srv/data": {}, "/cache": {}, "/json": {}}, "Env": ["HOME=/", PATH]},
                 id="args-expand-but-are-not-kept"),
    pytest.param(["ARG BASE=busybox", "FROM $BASE AS first", "ENV STAGE=first", "FROM busybox", "ARG BASE",
                  "ENV FROM_META=$BASE"], {}, {"Env": ["HOME=/", PATH, "FROM_META=busybox"]}, id="meta-args"),
    pytest.param(["# escape=`", "FROM busybox", "ENV P=C:\\dir `", "    Q=2"], {},
                 {"Env": ["HOME=/", PATH, "P=C:\\dir", "Q=2"]}, id="escape-directive"),
]


def _ports(config: dict) -> set[str]:
    ports = set(config.get("ExposedPorts") or {})
    for spec in config.get("PortSpecs") or []:
        ports.add(spec if "/" in spec else f"{spec}/tcp")
    return ports


@pytest.mark.parametrize(("lines", "args", "expected"), TABLE)
def test_dockerfile_gives_the_image_config(busybox_daemon, lines, args, expected):
    answer = build(busybox_daemon, context_tar({"Dockerfile": dockerfile(*lines)}),
                   buildargs=json.dumps(args) if args else None)
    assert answer.status_code == 200 and "Successfully built" in answer.text, answer.text
    with busybox_daemon.client() as client:
        config = client.get(f"/images/{built_id(answer.text)}/json").json()["config"]
    for key, value in expected.items():
        if key == "Ports":
            assert _ports(config) == value
        else:
            assert config[key] == value, (key, config)


@pytest.mark.parametrize(("text", "error"), [
    ("FROM busybox\nENV A=1 B\n", "can't find = in 'B'"),
    ("FROM busybox\nENV A=\"open\n", "line 2: unexpected end of statement while looking for matching double-quote"),
    ("FROM busybox\nLABEL a=b\n", "LABEL is not yet supported by moorage"),
    ("FROM busybox\nHEALTHCHECK CMD true\n", "HEALTHCHECK is not yet supported by moorage"),
    ("FROM busybox\nRUN --mount=type=cache,target=/x true\n", "requires BuildKit"),
    ("FROM busybox\nCOPY a b c\n", "a: no such file or directory"),
    # ignoring these would copy what the Dockerfile leaves out, or skip the check it asks for
    ("FROM busybox\nCOPY --exclude=*.log Dockerfile /d\n", "the --exclude option requires BuildKit"),
    ("FROM busybox\nCOPY --parents Dockerfile /d\n", "the --parents option requires BuildKit"),
    ("FROM busybox\nADD --checksum=sha256:00 Dockerfile /d\n", "the --checksum option requires BuildKit"),
])
def test_dockerfile_errors(busybox_daemon, text, error):
    answer = build(busybox_daemon, context_tar({"Dockerfile": text}))
    assert "Error build:" in answer.text and error in answer.text, answer.text


def test_buildkit_is_refused_naming_the_classic_builder(busybox_daemon):
    answer = build(busybox_daemon, context_tar({"Dockerfile": "FROM busybox\n"}), version="2")
    assert answer.status_code == 400 and "classic builder" in answer.text and "DOCKER_BUILDKIT=0" in answer.text


def test_unknown_target_is_refused(busybox_daemon):
    answer = build(busybox_daemon, context_tar({"Dockerfile": "FROM busybox AS a\n"}), target="b")
    assert answer.status_code == 400 and "failed to reach build target b" in answer.text


def test_copy_multi_stage_chown_chmod_wildcards_and_dockerignore(busybox_daemon):
    tag = f"table-copy-{uuid.uuid4().hex[:6]}"
    files = {
        "Dockerfile": dockerfile(
            "FROM busybox AS build",
            "COPY *.txt /in/",
            "RUN cat /in/*.txt > /joined && ls /in > /listing",
            "FROM busybox AS final",
            "COPY --from=build /joined /listing /out/",
            "COPY --from=0 --chown=daemon:1234 --chmod=640 /joined /owned",
            "COPY dir /dir",
            "ADD archive.tar /tmp/",  # an existing directory: unpacked (0.6.5's rule)
            "COPY archive.tar /kept/",
            "WORKDIR /w",
            "COPY a.txt rel",
            "CMD cat /out/joined /out/listing; stat -c '%u:%g %a' /owned; ls /dir /kept /tmp /w",
            "FROM busybox AS never",
            "RUN exit 3",
        ),
        ".dockerignore": "secret.txt\ndir/*.log\n!dir/keep.log\n",
        "a.txt": "a\n", "b.txt": "b\n", "secret.txt": "secret\n",
        "dir/": ("dir",), "dir/x.log": "x", "dir/keep.log": "k", "dir/f": "f",
        "archive.tar": context_tar({"inside.txt": "inside\n"}),
    }
    answer = build(busybox_daemon, context_tar(files), t=tag, target="final")
    assert answer.status_code == 200 and "Successfully built" in answer.text, answer.text
    assert "exit 3" not in answer.text  # the stage after the target is not built
    try:
        code, output, _ = run_in(busybox_daemon, tag, None)
        assert code == 0, output
        assert output == ("a\nb\na.txt\nb.txt\n1:1234 640\n/dir:\nf\nkeep.log\n\n/kept:\narchive.tar\n\n"
                          "/tmp:\ninside.txt\n\n/w:\nrel\n")
    finally:
        with busybox_daemon.client() as client:
            client.delete(f"/images/{tag}")


def test_copy_cache_follows_content_and_flags(busybox_daemon):
    def run(content: str, chmod: str) -> str:
        files = {"Dockerfile": f"FROM busybox\nCOPY --chmod={chmod} f /f\nRUN true\n", "f": content}
        answer = build(busybox_daemon, context_tar(files))
        assert "Successfully built" in answer.text, answer.text
        return answer.text

    run("one", "600")
    assert run("one", "600").count("Using cache") == 2
    assert run("two", "600").count("Using cache") == 0
    assert run("one", "644").count("Using cache") == 0

