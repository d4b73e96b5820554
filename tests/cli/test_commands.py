"""Everyday commands beyond run: rm -f, import repo:tag, events --until, plain errors."""

from __future__ import annotations

import io
import tarfile
import time


def test_rm_force_removes_a_running_container(cli):
    name = cli.name()
    cli("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert cli("rm", name, check=False).returncode != 0  # without -f it stays
    cli("rm", "-f", name)
    assert name not in cli("ps", "-a", "--format", "{{.Names}}").stdout.split()


def test_import_splits_repo_and_tag(cli):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    cli("import", "-", "cli-imported:v7", stdin=buf.getvalue())
    listing = cli("images", "--format", "{{.Repository}} {{.Tag}}").stdout.splitlines()
    assert "cli-imported v7" in listing and not any(line.startswith("cli-imported:v7") for line in listing)
    cli("rmi", "cli-imported:v7")


def test_events_until_ends_the_stream(cli):
    start = int(time.time())
    name = cli.name()
    cli("create", "--name", name, "busybox", "true")
    # the stream ends by itself at --until (the CLI's timeout fails the test otherwise)
    done = cli("events", "--since", str(start - 1), "--until", str(int(time.time()) + 2), timeout=15)
    assert "container create" in done.stdout and name in done.stdout
    # an until in the past ends at once, after the replay
    done = cli("events", "--since", str(start - 1), "--until", str(start - 1), timeout=10)
    assert name not in done.stdout


def test_unserved_endpoint_names_itself(cli, busybox_daemon):
    with busybox_daemon.client() as api:
        response = api.get("/v1.6/containers/x/no-such-thing")
        assert response.status_code == 404 and "does not serve GET /containers/x/no-such-thing" in response.text
        response = api.delete("/v1.6/version")
        assert response.status_code == 404 and "/version is served for GET, not DELETE" in response.text
    done = cli("inspect", "no-such-container-here", check=False)
    assert done.returncode != 0 and "page not found" not in done.stderr
