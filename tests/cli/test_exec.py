"""`docker exec`: inside the container's namespaces and cgroups, with its environment and
confinement; the exit code comes back; -i, -t, -u, -w, -e, -d, --privileged."""

from __future__ import annotations

import time


def running(cli, *flags: str) -> str:
    name = cli.name()
    cli("run", "-d", "--name", name, *flags, "busybox", "sleep", "120")
    return name


def test_exec_returns_output_and_exit_code(cli):
    name = running(cli, "-e", "FROM_RUN=yes")
    done = cli("exec", name, "sh", "-c", "echo out; echo err >&2; exit 5", check=False)
    assert done.returncode == 5 and done.stdout == "out\n" and done.stderr == "err\n"
    assert cli("exec", name, "sh", "-c", "echo $FROM_RUN").stdout == "yes\n"
    assert cli("exec", name, "no-such-command", check=False).returncode == 127


def test_exec_joins_the_container(cli):
    name = running(cli, "--hostname", "inside-host")
    # its pid namespace: pid 1 is the container's sleep; its uts namespace; its root
    out = cli("exec", name, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; hostname; ls /").stdout.splitlines()
    assert out[0].strip() == "sleep 120" and out[1] == "inside-host" and "bin" in out[2:]
    # its cgroups: `top` lists the container's processes from its cgroup, on the host
    cli("exec", "-d", name, "sleep", "77")
    deadline = time.monotonic() + 10
    while "sleep 77" not in cli("top", name).stdout and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "sleep 77" in cli("top", name).stdout


def test_exec_user_workdir_env_and_stdin(cli, busybox_daemon):
    name = running(cli, "-e", "FROM_RUN=yes")
    assert cli("exec", "-u", "nobody", name, "sh", "-c", "id -u").stdout == "65534\n"
    # today's CLI sends -e and -w only to API 1.25+ daemons: through the API
    with busybox_daemon.client() as api:
        exec_id = api.post(f"/containers/{name}/exec", json={
            "Cmd": ["sh", "-c", "pwd; echo $FROM_RUN $EXTRA; exit 3"], "Env": ["EXTRA=given"], "WorkingDir": "/tmp",
            "AttachStdout": True, "AttachStderr": True}).json()["Id"]
        answer = api.post(f"/exec/{exec_id}/start", json={})
        assert answer.content == b"\x01\x00\x00\x00\x00\x00\x00\x05/tmp\n" \
            b"\x01\x00\x00\x00\x00\x00\x00\x0ayes given\n" or b"yes given" in answer.content
        assert api.get(f"/exec/{exec_id}/json").json()["ExitCode"] == 3
    assert cli("exec", "-i", name, "cat", stdin="piped in\n").stdout == "piped in\n"
    done = cli("exec", "-u", "no-such-user", name, "true", check=False)
    assert done.returncode != 0 and "no-such-user" in done.stderr


def test_exec_keeps_the_container_confinement(cli):
    name = running(cli)

    def cap_eff(*flags: str) -> int:
        out = cli("exec", *flags, name, "grep", "CapEff", "/proc/self/status").stdout
        return int(out.split()[1], 16)

    assert not cap_eff() & (1 << 21)  # CAP_SYS_ADMIN, dropped as for the container's own processes
    assert cap_eff("--privileged") & (1 << 21)
    # the same capability bounding set and seccomp mode as the container's first process
    out = cli("exec", name, "sh", "-c", "grep -E 'CapBnd|Seccomp:' /proc/1/status; "
              "grep -E 'CapBnd|Seccomp:' /proc/self/status").stdout.split("\n")
    assert out[0:2] == out[2:4] and out[0].startswith("CapBnd")


def test_exec_tty(cli):
    name = running(cli)
    done = cli("exec", "-t", name, "sh", "-c", "test -t 0 && test -t 1 && echo on-a-tty; echo err >&2")
    # a tty: stderr comes on the same stream (lines end in \r\n; behind lxc-attach's own pty, \r\r\n)
    assert done.stdout.replace("\r", "") == "on-a-tty\nerr\n"


def test_exec_detached_and_inspected(cli, busybox_daemon):
    name = running(cli)
    cli("exec", "-d", name, "sh", "-c", "echo detached > /tmp/d")
    deadline = time.monotonic() + 10
    while cli("exec", name, "cat", "/tmp/d", check=False).stdout != "detached\n" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert cli("exec", name, "cat", "/tmp/d").stdout == "detached\n"
    with busybox_daemon.client() as api:
        created = api.post(f"/containers/{name}/exec", json={"Cmd": ["sh", "-c", "exit 9"], "AttachStdout": True})
        assert created.status_code == 201
        exec_id = created.json()["Id"]
        assert api.post(f"/exec/{exec_id}/start", json={"Detach": True}).status_code == 200
        deadline = time.monotonic() + 10
        while api.get(f"/exec/{exec_id}/json").json()["Running"] and time.monotonic() < deadline:
            time.sleep(0.1)
        state = api.get(f"/exec/{exec_id}/json").json()
        assert state["ExitCode"] == 9 and state["Running"] is False
        assert api.post(f"/exec/{exec_id}/start", json={"Detach": True}).status_code == 409
        assert api.get("/exec/nonexistent/json").status_code == 404


def test_exec_in_a_stopped_container_is_refused(cli):
    name = cli.name()
    cli("create", "--name", name, "busybox", "true")
    done = cli("exec", name, "true", check=False)
    assert done.returncode != 0 and "is not running" in done.stderr
