"""The foundation endpoints through a real daemon on a unix socket and TCP on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys

import pytest

CORS = {
    "access-control-allow-origin": "*",
    "access-control-allow-headers": "Origin, X-Requested-With, Content-Type, Accept",
    "access-control-allow-methods": "GET, POST, DELETE, PUT, OPTIONS",
}


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory):
    """One daemon for the read-only checks of this module (it is stopped at module end)."""
    from conftest import Daemon

    d = Daemon(tmp_path_factory.mktemp("system"), "", ["--api-enable-cors"]).start()
    yield d
    d.stop()


@pytest.mark.parametrize("tcp", [False, True], ids=["unix", "tcp"])
@pytest.mark.parametrize("prefix", ["", "/v1.6", "/v1.0", "/v1.3", "/v1.6.1"])
def test_ping_version_info_on_every_version(shared_daemon, tcp, prefix):
    with shared_daemon.client(tcp=tcp) as client:
        ping = client.get(f"{prefix}/_ping")
        assert ping.status_code == 200 and ping.text == "OK"
        assert ping.headers["api-version"] == "1.47"
        version = client.get(f"{prefix}/version")
        assert version.status_code == 200
        assert version.headers["content-type"] == "application/json"
        assert set(version.json()) <= {"Version", "GitCommit", "GoVersion", "ApiVersion", "MinAPIVersion", "Os",
                                       "Arch", "KernelVersion"}
        assert version.json()["ApiVersion"] == "1.47"
        assert version.json()["Version"]
        info = client.get(f"{prefix}/info").json()
        assert info["Containers"] == 0 and info["Images"] == 0 and info["Debug"] is False
        assert {"graph", "exec", "network", "registry"} == set(info["Drivers"])
        # the exec driver's answer for this host's cgroup v1 memory controller (swap accounting
        # depends on the kernel's command line)
        assert info["MemoryLimit"] is True
        assert info.get("SwapLimit", False) == os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


def test_head_ping(shared_daemon):
    with shared_daemon.client() as client:
        response = client.head("/_ping")
    assert response.status_code == 200 and response.headers["api-version"] == "1.47" and response.content == b""


@pytest.mark.parametrize("prefix", ["/v0", "/v0.0"])
def test_version_zero_gets_empty_404(shared_daemon, prefix):
    """Versions moorage does not serve above 1.6 get today's 400 (tests/api/test_modern_api.py)."""
    with shared_daemon.client() as client:
        response = client.get(f"{prefix}/version")
    assert response.status_code == 404 and response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"  # CORS is added before the check


def test_unknown_route_and_wrong_method_get_mux_404_without_cors(shared_daemon):
    with shared_daemon.client() as client:
        for response, text in ((client.get("/nope"), "moorage does not serve GET /nope"),
                               (client.get("/v1.6/nope"), "moorage does not serve GET /nope"),
                               (client.delete("/version"), "/version is served for GET, not DELETE")):
            assert response.status_code == 404
            assert response.text == f"404 page not found: {text}\n"
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            assert "access-control-allow-origin" not in response.headers


def test_options_answers_200_everywhere(shared_daemon):
    with shared_daemon.client() as client:
        for path in ("/", "/containers/json", "/whatever/at/all", "/v1.6/info"):
            response = client.options(path)
            assert response.status_code == 200 and response.content == b""


def test_cors_headers_exactly(shared_daemon):
    with shared_daemon.client() as client:
        response = client.get("/version")
    for key, value in CORS.items():
        assert response.headers[key] == value


def test_no_cors_headers_unless_enabled(daemon):
    with daemon.client() as client:
        response = client.get("/version")
    assert not any(k.startswith("access-control") for k in response.headers)


def test_bad_query_parameter_is_400_plain_text(shared_daemon):
    with shared_daemon.client() as client:
        response = client.get("/events", params={"since": "yesterday"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == "Bad parameter: since='yesterday' is not an integer\n"


def test_unix_socket_mode_and_clean_shutdown(daemon_factory):
    d = daemon_factory()
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660
    assert d.pidfile.read_text().strip() == str(d.proc.pid)
    assert d.stop(signal.SIGTERM) == 0
    assert not d.sock.exists() and not d.pidfile.exists()
    d2 = daemon_factory()
    assert d2.stop(signal.SIGINT) == 0
    assert not d2.sock.exists() and not d2.pidfile.exists()


def test_second_daemon_on_the_same_root_is_refused(daemon_factory):
    first = daemon_factory()
    second = daemon_factory(start=False, flags=["-g", str(first.root)])
    second.start(wait=False)
    assert second.proc.wait(30) != 0
    assert "already using the root directory" in second.log()
    assert first.client().get("/_ping").status_code == 200


def test_live_pidfile_is_refused(daemon_factory):
    first = daemon_factory()
    second = daemon_factory(start=False, flags=["-p", str(first.pidfile)])
    second.start(wait=False)
    assert second.proc.wait(30) != 0
    assert f"pid file found, ensure moorage is not running or delete {first.pidfile}" in second.log()


def test_bad_config_file_stops_the_daemon_naming_file_line_key(daemon_factory):
    d = daemon_factory('[daemon]\ndebug = false\nrestart = "maybe"\n', start=False)
    d.start(wait=False)
    assert d.proc.wait(30) != 0
    assert f"{d.config_path}, line 3: key daemon.restart" in d.log()
    assert not d.sock.exists()


def test_flag_beats_file_beats_default(daemon_factory):
    d = daemon_factory("[daemon]\ndebug = true\n")
    assert d.client().get("/info").json()["Debug"] is True
    d2 = daemon_factory("[daemon]\ndebug = true\n", flags=["-D=false"])
    assert d2.client().get("/info").json()["Debug"] is False


def test_cli_version_and_info(daemon):
    run = [sys.executable, "-m", "moorage.api.cli"]
    out = subprocess.run([*run, "version", "-H", daemon.unix_url], capture_output=True, text=True, check=True).stdout
    assert "Server version: " in out and "Client version: " in out
    out = subprocess.run([*run, "info", "-H", f"tcp://127.0.0.1:{daemon.port}"], capture_output=True, text=True,
                         check=True).stdout
    assert "Containers: 0" in out and "Images: 0" in out
    gone = subprocess.run([*run, "info", "-H", "unix:///nonexistent.sock"], capture_output=True, text=True)
    assert gone.returncode == 1 and "cannot reach the daemon" in gone.stderr
