"""`docker rename` (links follow), `docker pause`/`unpause` (State.Paused, the processes really
stop), `docker stats --no-stream` (memory, CPU, pids, network bytes)."""

from __future__ import annotations

import json
import time


def test_rename_moves_the_name_and_its_links(cli):
    db, web = cli.name("db"), cli.name("web")
    cli("run", "-d", "--name", db, "busybox", "sleep", "120")
    cli("run", "-d", "--name", web, "--link", f"{db}:db", "busybox", "sleep", "120")
    new_web, new_db = cli.name("web2"), cli.name("db2")
    cli("rename", web, new_web)
    cli("rename", db, new_db)
    names = cli("ps", "--format", "{{.Names}}").stdout.split()
    assert new_web in names and new_db in names and web not in names and db not in names
    assert cli("inspect", "-f", "{{.Name}}", new_web).stdout.strip() == f"/{new_web}"
    # the link under the renamed parent moved, and still points at the (renamed) child
    assert f"{new_web}/db" in cli("ps", "--no-trunc", "--format", "{{.Names}}").stdout
    taken = cli("rename", new_web, new_db, check=False)
    assert taken.returncode != 0 and "already exists" in taken.stderr
    cli("restart", "-t", "1", new_web)  # the link is found again at the next start
    assert "DB_NAME=" in cli("exec", new_web, "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ").stdout


def test_pause_freezes_and_unpause_thaws(cli):
    name = cli.name()
    cli("run", "-d", "--name", name, "busybox", "sh", "-c", "while true; do date +%s%N > /tmp/tick; sleep 0.05; done")
    time.sleep(0.5)
    cli("pause", name)
    assert cli("inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "true"
    assert "(Paused)" in cli("ps", "--format", "{{.Names}} {{.Status}}").stdout.split(name, 1)[1].splitlines()[0]
    first = cli("cp", f"{name}:/tmp/tick", "-").stdout
    time.sleep(0.6)
    assert cli("cp", f"{name}:/tmp/tick", "-").stdout == first  # nothing ran while frozen
    cli("unpause", name)
    time.sleep(0.6)
    assert cli("cp", f"{name}:/tmp/tick", "-").stdout != first
    assert cli("inspect", "-f", "{{.State.Paused}}", name).stdout.strip() == "false"
    cli("pause", name)
    cli("stop", "-t", "1", name)  # a paused container still stops
    assert cli("inspect", "-f", "{{.State.Running}} {{.State.Paused}}", name).stdout.strip() == "false false"


def test_pause_of_a_stopped_container_is_refused(cli):
    name = cli.name()
    cli("create", "--name", name, "busybox", "true")
    done = cli("pause", name, check=False)
    assert done.returncode != 0 and "not running" in done.stderr


def test_stats_no_stream(cli, busybox_daemon):
    name = cli.name()
    cli("run", "-d", "--name", name, "-m", "64m", "busybox", "sh", "-c",
        "head -c 20000000 /dev/zero > /tmp/fill; sleep 120 & sleep 121")
    time.sleep(1)
    with busybox_daemon.client() as api:
        data = api.get(f"/containers/{name}/stats", params={"stream": "0"}).json()
    assert data["memory_stats"]["limit"] == 64 * 1024 * 1024
    assert data["memory_stats"]["usage"] > 0 and data["pids_stats"]["current"] >= 2
    assert data["cpu_stats"]["cpu_usage"]["total_usage"] > 0
    out = cli("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", name).stdout
    assert name in out and "64MiB" in out


def test_stats_counts_network_bytes(cli, busybox_daemon):
    """Network bytes come from the container's own interfaces (host networking: the host's)."""
    name = cli.name()
    cli("run", "-d", "--name", name, "--network", "host", "busybox", "sleep", "120")
    with busybox_daemon.client() as api:
        data = api.get(f"/containers/{name}/stats", params={"stream": "0"}).json()
    assert data["networks"] and all("rx_bytes" in v for v in data["networks"].values())
    assert "lo" not in data["networks"]
    stats = json.dumps(data)
    assert '"name": "/' in stats
