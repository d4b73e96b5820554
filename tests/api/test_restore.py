"""Containers outlive the daemon: after a SIGKILL of the daemon, a new daemon on the same root
finds them again (live restore), with exits that happened meanwhile recorded."""

from __future__ import annotations

import signal

import pytest
from conftest import CONTAINER_CONFIG, eventually, import_image


@pytest.fixture
def config(exec_driver) -> str:
    return CONTAINER_CONFIG.format(graph="overlay", exec=exec_driver)


def start(api, cmd, **config) -> str:
    cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": cmd, **config}).json()["Id"]
    assert api.post(f"/containers/{cid}/start").status_code == 204
    return cid


def log_lines(api, cid) -> int:
    return api.post(f"/containers/{cid}/attach", params={"logs": 1, "stdout": 1}).content.count(b"\n")


def pid_of(api, cid) -> int:
    pid = api.get(f"/containers/{cid}/json").json()["State"]["Pid"]
    assert pid > 0
    return pid


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("PPid:")).split()[1])


def run_processes(daemon, pid: int) -> list[int]:
    """The container's process and the exec driver's monitor processes above it, below the one
    process the daemon started for them all: once these are gone, the exit is recorded."""
    chain = [pid]
    while parent_of(parent_of(chain[-1])) not in (daemon.proc.pid, 0, 1):
        chain.append(parent_of(chain[-1]))
    return chain


def release(pid: int) -> None:
    """Let a container whose init waits for ``/go`` (``until [ -e /go ]``) go on: the file is made
    in its root through ``/proc/<pid>/root``, so the test decides when it ends, not a sleep."""
    with open(f"/proc/{pid}/root/go", "w"):
        pass


def gone(pid: int) -> bool:
    """The process has exited (and been reaped: a zombie counts as gone too)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it exited between the open and the read
        return True


def test_sigkilled_daemon_restarts_with_containers_intact(daemon_factory, busybox_tar, config):
    first = daemon_factory(config)
    import_image(first, busybox_tar)
    with first.client() as api:
        ticker = start(api, ["/bin/sh", "-c", "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done"])
        ending = start(api, ["/bin/sh", "-c", "until [ -e /go ]; do sleep 0.05; done; exit 9"])
        stopped = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["/bin/true"]}).json()["Id"]
        before = eventually(lambda: log_lines(api, ticker), "the ticker's first lines")
        ticker_state = api.get(f"/containers/{ticker}/json").json()["State"]
        ending_processes = run_processes(first, pid_of(api, ending))
    first.kill()  # SIGKILL: no clean-up at all
    release(ending_processes[0])  # it ends now, while no daemon runs
    eventually(lambda: all(gone(p) for p in ending_processes), "`ending`'s exit to be recorded while no daemon runs")

    second = daemon_factory(config, flags=["-g", str(first.root), "-r=false"])
    with second.client() as api:
        state = api.get(f"/containers/{ticker}/json").json()["State"]
        assert state["Running"] is True and state["Ghost"] is False
        # what the start saved before the process existed, and the pid the exec driver knows
        assert (state["Pid"], state["StartedAt"]) == (ticker_state["Pid"], ticker_state["StartedAt"]) != (0, "")
        assert log_lines(api, ticker) > before  # it kept running and logging while the daemon was gone
        assert api.get(f"/containers/{ending}/json").json()["State"]["Running"] is False
        assert api.post(f"/containers/{ending}/wait").json() == {"StatusCode": 9}
        assert api.get(f"/containers/{stopped}/json").json()["State"]["Running"] is False
        assert {r["Id"][:12] for r in api.get("/containers/json").json()} >= {ticker}
        images = api.get("/images/json").json()
        assert [r.get("Repository") for r in images] == ["busybox"]
        # the re-adopted container is fully controllable
        assert api.post(f"/containers/{ticker}/stop", params={"t": 2}).status_code == 204
        assert api.post(f"/containers/{ticker}/wait").json()["StatusCode"] in (143, 137)
        assert api.delete(f"/containers/{ticker}").status_code == 204


def test_restart_flag_starts_containers_that_were_running(daemon_factory, busybox_tar, config):
    first = daemon_factory(config)
    import_image(first, busybox_tar)
    with first.client() as api:
        # the first run ends once released, while no daemon runs; the restarted one keeps running
        cid = start(api, ["/bin/sh", "-c", "echo started; if [ -e /ran ]; then sleep 1000; fi; touch /ran; "
                                           "until [ -e /go ]; do sleep 0.05; done"])
        processes = run_processes(first, pid_of(api, cid))
    first.kill()
    release(processes[0])
    eventually(lambda: all(gone(p) for p in processes), "the container's exit to be recorded while no daemon runs")
    second = daemon_factory(config, flags=["-g", str(first.root), "-r"])
    with second.client() as api:
        assert api.get(f"/containers/{cid}/json").json()["State"]["Running"] is True
        api.post(f"/containers/{cid}/kill")
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 137}
        assert log_lines(api, cid) == 2  # one line per run


def test_clean_stop_keeps_containers_running(daemon_factory, busybox_tar, config):
    first = daemon_factory(config)
    import_image(first, busybox_tar)
    with first.client() as api:
        cid = start(api, ["/bin/sleep", "1000"])  # outlives the restart, however slow (killed below)
        pid = api.get(f"/containers/{cid}/json").json()["State"]["Pid"]
    assert first.stop(signal.SIGTERM) == 0
    second = daemon_factory(config, flags=["-g", str(first.root)])
    with second.client() as api:
        state = api.get(f"/containers/{cid}/json").json()["State"]
        assert state["Running"] is True and state["Pid"] == pid
        api.post(f"/containers/{cid}/kill")
        assert api.post(f"/containers/{cid}/wait").json() == {"StatusCode": 137}


def test_sigkill_during_creates_starts_and_removes_leaves_whole_containers(daemon_factory, busybox_tar, config):
    import threading

    first = daemon_factory(config)
    import_image(first, busybox_tar)
    names = [f"crash{i}" for i in range(40)]

    def churn():
        try:
            with first.client(timeout=10) as api:
                for name in names:
                    cid = api.post("/containers/create", params={"name": name},
                                   json={"Image": "busybox", "Cmd": ["/bin/true"]}).json()["Id"]
                    api.post(f"/containers/{cid}/start")
                    if int(name[5:]) % 3 == 0:
                        api.post(f"/containers/{cid}/wait")
                        api.delete(f"/containers/{cid}")
        except Exception:
            pass  # the daemon is killed under it

    worker = threading.Thread(target=churn)
    worker.start()
    with first.client() as api:  # killed in the middle of the churn
        eventually(lambda: len(api.get("/containers/json", params={"all": 1}).json()) >= 3, "the churn to begin",
                   timeout=600)  # a deadline: three creates and starts take minutes in the TCG VM
    first.kill()
    worker.join(30)

    second = daemon_factory(config, flags=["-g", str(first.root), "-r=false"])
    with second.client() as api:
        rows = api.get("/containers/json", params={"all": 1}).json()
        for row in rows:  # every container that survived is whole: inspectable, waitable, removable
            assert api.get(f"/containers/{row['Id']}/json").status_code == 200
            api.post(f"/containers/{row['Id']}/wait")
            assert api.delete(f"/containers/{row['Id']}").status_code == 204
        for name in names:  # and no name is held by a container that does not exist
            created = api.post("/containers/create", params={"name": name},
                               json={"Image": "busybox", "Cmd": ["/bin/true"]})
            assert created.status_code == 201, (name, created.text)
    leftovers = [p.name for p in (first.root / "containers" / "_tmp").iterdir()]
    assert leftovers == [] or all(p.startswith("removing-") for p in leftovers)
