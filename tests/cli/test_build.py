"""`docker build` (the classic builder) reads the JSON message stream; -t gives a runnable image."""

from __future__ import annotations

import uuid


def test_build_tag_gives_a_runnable_image(cli, tmp_path):
    tag = f"cli-built-{uuid.uuid4().hex[:6]}:v1"
    (tmp_path / "Dockerfile.alt").write_text("FROM busybox\nRUN echo built > /built.txt\nCMD cat /built.txt\n")
    (tmp_path / "Dockerfile").write_text("FROM busybox\nCMD echo wrong dockerfile\n")
    done = cli("build", "-t", tag, "-f", str(tmp_path / "Dockerfile.alt"), "--no-cache", str(tmp_path))
    assert "Successfully built" in done.stdout
    try:
        assert cli("run", "--rm", tag).stdout == "built\n"
    finally:
        cli("rmi", tag, check=False)


def test_build_failure_is_printed_as_an_error(cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN exit 7\n")
    done = cli("build", str(tmp_path), check=False)
    assert done.returncode != 0 and "returned a non-zero code: 7" in done.stderr, done.stderr
    assert "invalid character" not in done.stderr


def test_build_options_it_cannot_honour_are_refused(cli, tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    done = cli("build", "--label", "a=b", str(tmp_path), check=False)
    assert done.returncode != 0 and "labels (a)" in done.stderr
    done = cli("build", "--pull", str(tmp_path), check=False)  # the test registry is unreachable
    assert done.returncode != 0 and "invalid character" not in done.stderr


def test_build_args_reach_run_and_substitution_but_not_the_image(cli, tmp_path):
    tag = f"cli-args-{uuid.uuid4().hex[:6]}:v1"
    (tmp_path / "Dockerfile").write_text("FROM busybox\nARG GREETING=default\nARG UNSET\n"
                                         "ENV SAID $GREETING\nRUN echo \"run sees $GREETING\" > /greeting\n"
                                         "CMD cat /greeting; echo \"env: $SAID ${GREETING:-gone}\"\n")
    done = cli("build", "-t", tag, "--build-arg", "GREETING=hello", "--build-arg", "EXTRA=x", str(tmp_path))
    assert "EXTRA" in done.stdout and "not consumed" in done.stdout
    try:
        assert cli("run", "--rm", tag).stdout == "run sees hello\nenv: hello gone\n"
    finally:
        cli("rmi", tag, check=False)
