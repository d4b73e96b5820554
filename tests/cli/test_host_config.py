"""`docker run` options travel in create's HostConfig: each one has its effect, or the daemon
refuses it by name; `docker inspect` shows the HostConfig in force."""

from __future__ import annotations

import json
import os
import time


def test_bind_mount_writes_into_the_host_directory_and_ro_is_read_only(cli, tmp_path):
    (tmp_path / "in.txt").write_text("from the host\n")
    out = cli("run", "--rm", "-v", f"{tmp_path}:/data", "busybox", "sh", "-c",
              "cat /data/in.txt; echo from the container > /data/out.txt").stdout
    assert out == "from the host\n"
    assert (tmp_path / "out.txt").read_text() == "from the container\n"
    done = cli("run", "--rm", "-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c", "echo x > /data/ro.txt",
               check=False)
    assert done.returncode != 0 and not (tmp_path / "ro.txt").exists()


def test_named_volume_is_refused_plainly(cli):
    done = cli("run", "--rm", "-v", "somename:/data", "busybox", "true", check=False)
    assert done.returncode != 0 and "somename:/data" in done.stderr and "absolute path" in done.stderr


def test_volumes_from_shares_the_volume(cli):
    owner = cli.name("vol")
    cli("run", "--name", owner, "-v", "/shared", "busybox", "sh", "-c", "echo shared > /shared/f")
    assert cli("run", "--rm", "--volumes-from", owner, "busybox", "cat", "/shared/f").stdout == "shared\n"


def test_link_injects_env_and_hosts(cli):
    db = cli.name("db")
    cli("run", "-d", "--name", db, "-e", "SECRET=s3", "busybox", "sleep", "60")
    web = cli.name("web")
    out = cli("run", "--name", web, "--link", f"{db}:db", "busybox", "sh", "-c", "env; cat /etc/hosts").stdout
    assert "DB_ENV_SECRET=s3" in out and "DB_NAME=/" in out
    assert json.loads(cli("inspect", web).stdout)[0]["HostConfig"]["Links"] == [f"/{db}:/{web}/db"]


def test_dns_search_and_extra_hosts_are_written(cli):
    out = cli("run", "--rm", "--dns", "9.9.9.9", "--dns-search", "example.test", "--add-host", "h.test:10.1.2.3",
              "busybox", "sh", "-c", "cat /etc/resolv.conf /etc/hosts").stdout
    assert "nameserver 9.9.9.9" in out and "search example.test" in out
    assert "10.1.2.3\th.test" in out


def test_memory_and_cpu_shares_are_in_force_and_inspected(cli):
    name = cli.name()
    cli("run", "-d", "--name", name, "-m", "64m", "--cpu-shares", "512", "busybox", "sleep", "60")
    shown = cli("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}", name).stdout.split()
    assert shown == ["67108864", "512"]
    pid = cli("inspect", "-f", "{{.State.Pid}}", name).stdout.strip()
    # the limit is the kernel's: read the memory cgroup of the container's process on the host
    limit = None
    for line in open(f"/proc/{pid}/cgroup"):
        _, controllers, path = line.rstrip("\n").split(":", 2)
        if "memory" in controllers.split(","):
            limit = int(open(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read())
        elif controllers == "" and limit is None:
            try:
                limit = int(open(f"/sys/fs/cgroup{path}/memory.max").read())
            except (OSError, ValueError):
                pass
    assert limit == 67108864


def test_too_little_memory_is_refused(cli):
    done = cli("run", "--rm", "-m", "100k", "busybox", "true", check=False)
    assert done.returncode != 0 and "Memory limit" in done.stderr


def test_privileged_has_every_capability(cli):
    def cap_eff(*flags):
        out = cli("run", "--rm", *flags, "busybox", "grep", "CapEff", "/proc/self/status").stdout
        return int(out.split()[1], 16)

    assert cap_eff("--privileged") & (1 << 21)  # CAP_SYS_ADMIN
    assert not cap_eff() & (1 << 21)


def test_network_none_and_host(cli):
    assert cli("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net").stdout.split() == ["lo"]
    # The namespace itself, not a listing of links: other workers add and remove veths meanwhile.
    inside = cli("run", "--rm", "--network", "host", "busybox", "readlink", "/proc/self/ns/net").stdout.strip()
    assert inside == os.readlink("/proc/self/ns/net")
    none = cli("run", "--rm", "--network", "none", "busybox", "readlink", "/proc/self/ns/net").stdout.strip()
    assert none.startswith("net:[") and none != inside
    name = cli.name()
    cli("create", "--name", name, "--network", "host", "busybox", "true")
    assert cli("inspect", "-f", "{{.HostConfig.NetworkMode}}", name).stdout.strip() == "host"


def test_network_container_mode_is_a_clear_400(cli):
    done = cli("run", "--rm", "--network", "container:someone", "busybox", "true", check=False)
    assert done.returncode != 0 and "container:someone" in done.stderr and "not supported" in done.stderr


def test_unsupported_option_is_refused_by_name(cli):
    done = cli("run", "--rm", "--pids-limit", "10", "busybox", "true", check=False)
    assert done.returncode != 0 and "PidsLimit" in done.stderr
    done = cli("run", "--rm", "--oom-score-adj", "5", "--shm-size", "1m", "busybox", "true", check=False)
    assert done.returncode != 0 and "OomScoreAdj" in done.stderr and "ShmSize" in done.stderr
    # API 1.6 has no labels nor stop signal: refused by name there (today's versions store them)
    legacy = cli.env.get("DOCKER_API_VERSION")
    cli.env["DOCKER_API_VERSION"] = "1.6"
    try:
        done = cli("run", "--rm", "--label", "team=x", "--stop-signal", "SIGUSR1", "busybox", "true", check=False)
    finally:
        cli.env.pop("DOCKER_API_VERSION")
        if legacy:
            cli.env["DOCKER_API_VERSION"] = legacy
    assert done.returncode != 0 and "Labels" in done.stderr and "StopSignal" in done.stderr
    # a plain run sends dozens of fields at their defaults: none of them is "given"
    assert cli("run", "--rm", "busybox", "echo", "ok").stdout == "ok\n"


def test_restart_policy_on_failure_is_carried_out_by_the_daemon(cli):
    name = cli.name()
    cli("run", "-d", "--name", name, "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = cli("inspect", name).stdout
        state = json.loads(logs)[0]["State"]
        lines = _log_lines(cli, name)
        if lines >= 3 and not state["Running"]:
            break
        time.sleep(0.3)
    time.sleep(1.5)  # a fourth run would come within the back-off
    assert _log_lines(cli, name) == 3
    policy = json.loads(cli("inspect", name).stdout)[0]["HostConfig"]["RestartPolicy"]
    assert policy == {"Name": "on-failure", "MaximumRetryCount": 2}


def test_restart_always_is_not_undone_by_stop(cli):
    name = cli.name()
    cli("run", "-d", "--name", name, "--restart", "always", "busybox", "sh", "-c", "echo run; sleep 0.2")
    deadline = time.monotonic() + 30
    while _log_lines(cli, name) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _log_lines(cli, name) >= 2
    cli("stop", "-t", "1", name)
    time.sleep(0.5)
    count = _log_lines(cli, name)
    time.sleep(1.5)
    assert _log_lines(cli, name) == count
    assert cli("inspect", "-f", "{{.State.Running}}", name).stdout.strip() == "false"


def _log_lines(cli, name: str) -> int:
    data = json.loads(cli("inspect", name).stdout)[0]
    try:
        with open(data["ResolvConfPath"].rsplit("/", 1)[0] + f"/{data.get('Id') or data['ID']}-json.log") as f:
            return sum(1 for line in f if '"run\\n"' in line)
    except FileNotFoundError:
        return 0


def test_start_host_config_overrides_create(cli, busybox_daemon, tmp_path):
    """A 1.6 client's start body replaces what create saved (as Docker did)."""
    name = cli.name()
    cli("create", "--name", name, "--dns", "9.9.9.9", "busybox", "cat", "/etc/resolv.conf")
    with busybox_daemon.client() as api:
        assert api.post(f"/containers/{name}/start", json={"Dns": ["8.8.4.4"]}).status_code == 204
        api.post(f"/containers/{name}/wait")
    out = cli("logs", name).stdout if False else _resolv(cli, name)
    assert "8.8.4.4" in out and "9.9.9.9" not in out
    with busybox_daemon.client() as api:
        response = api.post(f"/containers/{name}/start", json={"PidsLimit": 5})
    assert response.status_code == 400 and "PidsLimit" in response.text


def _resolv(cli, name: str) -> str:
    return open(json.loads(cli("inspect", name).stdout)[0]["ResolvConfPath"]).read()


def test_read_only_rootfs_refuses_writes_to_the_root_but_not_to_the_mounts(cli, tmp_path):
    done = cli("run", "--rm", "--read-only", "busybox", "touch", "/x", check=False)
    assert done.returncode != 0 and "Read-only file system" in done.stderr
    name = cli.name("ro")
    script = ("if touch /tmp/y 2>/dev/null; then echo tmp-writable; fi; "
              "if mkdir /newdir 2>/dev/null; then echo root-writable; fi; "
              "echo bound > /data/out.txt && echo 1.2.3.4 extra >> /etc/hosts && echo x > /dev/shm/x "
              "&& echo x > /dev/null && echo ok")
    out = cli("run", "--name", name, "--read-only", "-v", f"{tmp_path}:/data", "-w", "/made/here", "busybox",
              "sh", "-c", script).stdout
    assert out == "ok\n"  # /tmp is read-only too (no --tmpfs), as in Docker
    assert (tmp_path / "out.txt").read_text() == "bound\n"
    assert json.loads(cli("inspect", name).stdout)[0]["HostConfig"]["ReadonlyRootfs"] is True
    # without the option the same root is writable: the flag, not the image, made it read-only
    assert cli("run", "--rm", "busybox", "sh", "-c", "touch /x && echo ok").stdout == "ok\n"


def test_read_only_rootfs_from_start_host_config(cli, busybox_daemon):
    """A 1.6-style start body may ask for it too; start's host config replaces create's."""
    name = cli.name()
    cli("create", "--name", name, "busybox", "sh", "-c", "touch /x 2>&1; echo rc=$?")
    with busybox_daemon.client() as api:
        assert api.post(f"/containers/{name}/start", json={"ReadonlyRootfs": True}).status_code == 204
        api.post(f"/containers/{name}/wait")
        assert api.get(f"/containers/{name}/json").json()["HostConfig"]["ReadonlyRootfs"] is True
    out = cli("logs", name).stdout
    assert "Read-only file system" in out and "rc=1" in out


def test_cp_into_a_read_only_rootfs_is_refused(cli, tmp_path):
    """As Docker: `docker cp` writes into the container's rootfs, which --read-only forbids."""
    name = cli.name("rocp")
    cli("create", "--name", name, "--read-only", "busybox", "true")
    (tmp_path / "f").write_text("x\n")
    done = cli("cp", str(tmp_path / "f"), f"{name}:/f", check=False)
    assert done.returncode != 0 and "read-only" in done.stderr
    plain = cli.name("rwcp")
    cli("create", "--name", plain, "busybox", "true")
    cli("cp", str(tmp_path / "f"), f"{plain}:/f")
