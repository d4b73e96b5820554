"""TLS on the TCP listeners, with Docker 0.10's flags (``--tls``, ``--tlsverify``, ``--tlscacert``,
``--tlscert``, ``--tlskey``) and the same keys in the config file. Judged by today's docker CLI
(``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``), docker-py 0.2.3 and plain TLS clients; a client
without a CA-signed certificate must not get in."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import uuid

import httpx
import pytest
from conftest import CONTAINER_CONFIG, Daemon, busybox_daemon_in, exec_driver_unsupported, import_docker_py

trustme = pytest.importorskip("trustme", reason="trustme is installed by `bash bootstrap test`")

if exec_driver_unsupported("native"):
    pytest.skip(f"native exec driver: {exec_driver_unsupported('native')}", allow_module_level=True)


class Certs:
    """A CA, the daemon's certificate (for 127.0.0.1 and localhost), a client certificate the
    CA signed (laid out as a DOCKER_CERT_PATH) and one signed by another CA."""

    def __init__(self, base) -> None:
        ca, rogue = trustme.CA(), trustme.CA()
        self.ca = base / "ca.pem"
        ca.cert_pem.write_to_path(self.ca)
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.server_cert, self.server_key = base / "server-cert.pem", base / "server-key.pem"
        server.cert_chain_pems[0].write_to_path(self.server_cert)
        server.private_key_pem.write_to_path(self.server_key)
        self.client_dir = base / "client"
        self.rogue_dir = base / "rogue"
        for directory, issuer in ((self.client_dir, ca), (self.rogue_dir, rogue)):
            directory.mkdir()
            ca.cert_pem.write_to_path(directory / "ca.pem")
            client = issuer.issue_cert("client")
            client.cert_chain_pems[0].write_to_path(directory / "cert.pem")
            client.private_key_pem.write_to_path(directory / "key.pem")
        self.no_cert_dir = base / "no-cert"
        self.no_cert_dir.mkdir()
        ca.cert_pem.write_to_path(self.no_cert_dir / "ca.pem")

    def flags(self, verify: bool = True) -> list[str]:
        flags = ["--tlsverify", "--tlscacert", str(self.ca)] if verify else ["--tls"]
        return [*flags, "--tlscert", str(self.server_cert), "--tlskey", str(self.server_key)]

    def client_context(self, cert_dir=None) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        if cert_dir is not None:
            context.load_cert_chain(cert_dir / "cert.pem", cert_dir / "key.pem")
        return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    return Certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory, busybox_tar, certs):
    """A daemon whose TCP listener requires client certificates (--tlsverify), with busybox."""
    base = tmp_path_factory.mktemp(f"tlsd-{uuid.uuid4().hex[:6]}")
    with busybox_daemon_in(base, busybox_tar, CONTAINER_CONFIG.format(graph="overlay", exec="native"),
                           flags=certs.flags()) as d:
        yield d


def https(daemon: Daemon, certs: Certs, cert_dir=None) -> httpx.Client:
    return httpx.Client(base_url=f"https://127.0.0.1:{daemon.port}", verify=certs.client_context(cert_dir), timeout=30)


def test_a_client_with_a_certificate_the_ca_signed_gets_in(tls_daemon, certs):
    with https(tls_daemon, certs, certs.client_dir) as client:
        assert client.get("/_ping").text == "OK"
        assert client.get("/version").json()["ApiVersion"] == "1.47"


@pytest.mark.parametrize("who", ["no certificate", "a certificate another CA signed", "plain HTTP"])
def test_a_client_without_a_ca_signed_certificate_is_refused(tls_daemon, certs, who):
    if who == "plain HTTP":
        client = httpx.Client(base_url=f"http://127.0.0.1:{tls_daemon.port}", timeout=10)
    else:
        client = https(tls_daemon, certs, None if who == "no certificate" else certs.rogue_dir)
    with client, pytest.raises(httpx.TransportError):
        client.get("/containers/json")
    assert "Traceback" not in tls_daemon.log()


def test_the_unix_socket_stays_plain(tls_daemon):
    with tls_daemon.client() as client:
        assert client.get("/_ping").text == "OK"


def test_no_warning_with_tlsverify(tls_daemon):
    assert "WITHOUT --tlsverify" not in tls_daemon.log()


@pytest.fixture
def docker_tls(tls_daemon, certs):
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI (bash bootstrap test installs one)")

    def run(*args: str, cert_dir=certs.client_dir, stdin: str | None = None, tlsverify: bool = True):
        env = {**os.environ, "DOCKER_HOST": f"tcp://127.0.0.1:{tls_daemon.port}", "DOCKER_CERT_PATH": str(cert_dir),
               "DOCKER_CONFIG": str(tls_daemon.base)}
        env.pop("DOCKER_TLS_VERIFY", None)
        if tlsverify:
            env["DOCKER_TLS_VERIFY"] = "1"
        return subprocess.run(["docker", *args], env=env, input=stdin, capture_output=True, text=True, timeout=180)

    return run


def test_docker_cli_over_tls(docker_tls):
    done = docker_tls("version", "--format", "{{.Server.APIVersion}}")
    assert done.returncode == 0 and done.stdout.strip() == "1.47", done.stderr
    done = docker_tls("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (done.returncode, done.stdout, done.stderr.strip()) == (3, "out\n", "err")


def test_docker_cli_attach_with_stdin_over_tls(docker_tls):
    """The connection takeover over TLS: input, the client's half-close, output after it."""
    done = docker_tls("run", "-i", "--rm", "busybox", "sh", "-c", "cat; sleep 0.5; echo after-eof",
                      stdin="through stdin\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "through stdin\nafter-eof\n"


def test_docker_cli_without_a_client_certificate_is_refused(docker_tls, certs):
    done = docker_tls("--tls", "--tlscacert", str(certs.ca), "ps", cert_dir=certs.no_cert_dir, tlsverify=False)
    assert done.returncode != 0
    done = docker_tls("ps", cert_dir=certs.rogue_dir)
    assert done.returncode != 0


def test_docker_py_over_tls(tls_daemon, certs):
    docker = import_docker_py()
    # its urllib3 matches names only, not IP addresses: the daemon's certificate names localhost
    client = docker.Client(base_url=f"https://localhost:{tls_daemon.port}", version="1.6", timeout=60)
    # docker-py 0.2.3 is a requests.Session: TLS is the session's (it had no TLS options yet)
    client.cert = (str(certs.client_dir / "cert.pem"), str(certs.client_dir / "key.pem"))
    client.verify = str(certs.ca)
    client.trust_env = False  # or REQUESTS_CA_BUNDLE in the environment would replace verify
    assert client.version()["ApiVersion"] == "1.47"
    cid = client.create_container("busybox", ["/bin/sh", "-c", "echo over tls"])["Id"]
    try:
        client.start(cid)
        assert client.wait(cid) == 0
        assert client.logs(cid) == "over tls\n"
        assert client.inspect_container(cid)["State"]["ExitCode"] == 0
    finally:
        client.remove_container(cid)
    stranger = docker.Client(base_url=f"https://localhost:{tls_daemon.port}", version="1.6", timeout=10)
    stranger.verify, stranger.trust_env = str(certs.ca), False
    with pytest.raises(Exception):  # noqa: B017 (requests 2.0.1's own SSLError or ConnectionError)
        stranger.containers()


def test_attach_websocket_over_tls(tls_daemon, certs):
    from websockets.sync.client import connect

    with tls_daemon.client() as api:
        cid = api.post("/containers/create", json={"Image": "busybox", "Cmd": ["/bin/sh", "-c", "read x; echo got $x"],
                                                   "OpenStdin": True}).json()["Id"]
        try:
            assert api.post(f"/containers/{cid}/start").status_code == 204
            url = f"wss://127.0.0.1:{tls_daemon.port}/v1.6/containers/{cid}/attach/ws?stream=1&stdin=1&stdout=1"
            received = b""
            with connect(url, ssl=certs.client_context(certs.client_dir)) as ws:
                ws.send(b"hi\n")
                while b"\n" not in received:
                    received += ws.recv(timeout=10)
            assert received == b"got hi\n"
            with pytest.raises(Exception):  # noqa: B017 (a TLS or websocket error, by client version)
                with connect(url, ssl=certs.client_context(None), open_timeout=10) as ws:
                    ws.recv(timeout=5)
        finally:
            api.post(f"/containers/{cid}/kill")
            api.delete(f"/containers/{cid}")


def test_tls_without_verify_serves_any_client_and_warns(daemon_factory, certs):
    d = daemon_factory(flags=certs.flags(verify=False))
    with https(d, certs) as client:
        assert client.get("/_ping").text == "OK"
    assert "WITHOUT --tlsverify" in d.log()


def test_tls_keys_in_the_config_file(daemon_factory, certs):
    d = daemon_factory(config=f'[daemon]\ntlsverify = true\ntlscacert = "{certs.ca}"\n'
                              f'tlscert = "{certs.server_cert}"\ntlskey = "{certs.server_key}"\n')
    with https(d, certs, certs.client_dir) as client:
        assert client.get("/_ping").text == "OK"
    with https(d, certs) as client, pytest.raises(httpx.TransportError):
        client.get("/_ping")


def test_plain_tcp_on_loopback_warns_loudly(daemon_factory):
    d = daemon_factory()
    assert "WITHOUT --tlsverify" in d.log() and "controls this" in d.log()


def _refused_at_start(daemon_factory, **kwargs) -> str:
    d = daemon_factory(start=False, **kwargs)
    d.start(wait=False)
    assert d.proc.wait(30) != 0
    return d.log()


def test_a_non_loopback_address_without_tlsverify_needs_the_opt_in(daemon_factory, certs):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        port = s.getsockname()[1]
    log = _refused_at_start(daemon_factory, flags=["-H", f"tcp://0.0.0.0:{port}"])
    assert "refusing to listen on tcp://0.0.0.0" in log and "allow_unauthenticated_tcp" in log
    log = _refused_at_start(daemon_factory, flags=["-H", f"tcp://0.0.0.0:{port}", *certs.flags(verify=False)])
    assert "refusing to listen on tcp://0.0.0.0" in log


def test_a_missing_certificate_stops_the_daemon(daemon_factory, certs, tmp_path):
    log = _refused_at_start(daemon_factory, flags=["--tlsverify", "--tlscacert", str(certs.ca),
                                                   "--tlscert", str(tmp_path / "nope.pem"),
                                                   "--tlskey", str(certs.server_key)])
    assert f"--tlscert {tmp_path / 'nope.pem'}" in log


def test_check_exposure_accepts_the_opt_in_and_verified_listeners(caplog):
    from moorage.api.http.server import Listen, Tls, check_exposure
    from moorage.core.sdk.errors import ConfigError

    public = [Listen("tcp", host="0.0.0.0", port=1)]
    with pytest.raises(ConfigError):
        check_exposure(public, None, allow_unauthenticated_tcp=False)
    check_exposure(public, None, allow_unauthenticated_tcp=True)
    assert "WITHOUT --tlsverify" in caplog.text
    caplog.clear()
    check_exposure(public, Tls(cert="c", key="k", ca="ca"), allow_unauthenticated_tcp=False)
    assert "WITHOUT" not in caplog.text
    with pytest.raises(ConfigError):
        check_exposure([Listen("tcp", host="daemon.example", port=1)], None, allow_unauthenticated_tcp=False)
