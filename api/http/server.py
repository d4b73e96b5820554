"""Listening sockets (``-H``), TLS on the TCP ones, and the uvicorn server that serves the app.

TLS follows Docker 0.10's flags: ``--tls`` serves TCP over TLS with the daemon's certificate;
``--tlsverify`` (which implies ``--tls``) also requires every client to present a certificate
signed by ``--tlscacert``. Unix sockets stay plain, as Docker's did: their file mode guards them.
TCP without ``--tlsverify`` lets anyone who can connect run containers as root, so it is logged
loudly at start, and on an address that is not loopback it needs ``allow_unauthenticated_tcp``.
"""

from __future__ import annotations

import asyncio
import grp
import ipaddress
import logging
import os
import socket
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from moorage.api.http.hijack import OPEN_RAW_CONNECTIONS, HijackingH11Protocol
from moorage.core.kernel.config import DaemonSection
from moorage.core.sdk.errors import ConfigError

log = logging.getLogger(__name__)

DEFAULT_TCP_HOST = "127.0.0.1"
DEFAULT_TCP_PORT = 4243
SOCKET_GROUPS = ("docker", "moorage")


@dataclass(frozen=True)
class Listen:
    kind: str  # "unix" or "tcp"
    path: str = ""
    host: str = ""
    port: int = 0

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.kind == "unix" else f"tcp://{self.host}:{self.port}"


def parse_host(spec: str) -> Listen:
    """``unix:///path``, ``tcp://host:port``, ``host:port``, ``:port`` (Docker's -H forms)."""
    spec = spec.strip()
    if spec.startswith("unix://"):
        path = spec[len("unix://"):]
        if not path.startswith("/"):
            raise ConfigError(f"invalid -H {spec!r}: a unix socket needs an absolute path")
        return Listen("unix", path=path)
    if spec.startswith("tcp://"):
        spec = spec[len("tcp://"):]
    elif "://" in spec:
        raise ConfigError(f"invalid -H {spec!r}: use unix:///path or tcp://host:port")
    host, _, port = spec.rpartition(":") if ":" in spec else (spec, "", "")
    host = host.strip("[]") or DEFAULT_TCP_HOST
    try:
        port_number = int(port) if port else DEFAULT_TCP_PORT
    except ValueError:
        raise ConfigError(f"invalid -H {spec!r}: port {port!r} is not a number") from None
    return Listen("tcp", host=host, port=port_number)


def bind(listen: Listen) -> socket.socket:
    if listen.kind == "unix":
        path = Path(listen.path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        os.chmod(path, 0o660)
        for group in SOCKET_GROUPS:
            try:
                os.chown(path, 0, grp.getgrnam(group).gr_gid)
                break
            except KeyError:
                continue
    else:
        family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((listen.host, listen.port))
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


#: sd_listen_fds(3): the first socket systemd passes is fd 3
SD_LISTEN_FDS_START = 3


def activation_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed (socket activation: ``moorage.socket``), or none.

    They are ours only if ``LISTEN_PID`` is this process; the variables are removed so that no
    child takes them for its own."""
    count, pid = os.environ.pop("LISTEN_FDS", ""), os.environ.pop("LISTEN_PID", "")
    os.environ.pop("LISTEN_FDNAMES", None)
    if not count.isdigit() or pid != str(os.getpid()):
        return []
    sockets = [socket.socket(fileno=fd) for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count))]
    for sock in sockets:
        sock.set_inheritable(False)
    return sockets


def unlink_unix(listens: list[Listen]) -> None:
    for listen in listens:
        if listen.kind == "unix":
            try:
                os.unlink(listen.path)
            except FileNotFoundError:
                pass


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: whatever it resolves to, it is not known to stay on this host


@dataclass(frozen=True)
class Tls:
    """The TLS settings of the TCP listeners."""

    cert: Path
    key: Path
    #: set with --tlsverify: clients must present a certificate this CA signed
    ca: Path | None = None

    @property
    def verify(self) -> bool:
        return self.ca is not None


def default_cert_dir() -> Path:
    """Where Docker looked for certificates: ``$DOCKER_CERT_PATH``, else ``~/.docker``."""
    return Path(os.environ.get("DOCKER_CERT_PATH") or Path.home() / ".docker")


def tls_settings(daemon: DaemonSection) -> Tls | None:
    """The TLS of the TCP listeners from ``[daemon]`` (and its flags), or None without TLS.
    A certificate file that cannot be read stops the daemon, naming the flag."""
    if not (daemon.tls or daemon.tlsverify):
        return None
    cert_dir = default_cert_dir()
    files = {"tlscert": Path(daemon.tlscert or cert_dir / "cert.pem"),
             "tlskey": Path(daemon.tlskey or cert_dir / "key.pem")}
    if daemon.tlsverify:
        files["tlscacert"] = Path(daemon.tlscacert or cert_dir / "ca.pem")
    for flag, path in files.items():
        if not os.access(path, os.R_OK):
            raise ConfigError(f"--{flag} {path}: cannot read the file (TLS needs it)")
    tls = Tls(cert=files["tlscert"], key=files["tlskey"], ca=files.get("tlscacert"))
    try:
        ssl_context(tls)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(f"TLS: cannot use --tlscert {tls.cert} / --tlskey {tls.key} / --tlscacert {tls.ca}: "
                          f"{exc}") from None
    return tls


def ssl_context(tls: Tls) -> ssl.SSLContext:
    """The server context, made by uvicorn's own SSL support; TLS 1.2 at least."""
    context = uvicorn.config.create_ssl_context(
        certfile=tls.cert, keyfile=tls.key, password=None, ssl_version=ssl.PROTOCOL_TLS_SERVER,
        cert_reqs=ssl.CERT_REQUIRED if tls.verify else ssl.CERT_NONE, ca_certs=tls.ca, ciphers=None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def check_exposure(listens: list[Listen], tls: Tls | None, allow_unauthenticated_tcp: bool) -> None:
    """Refuse a non-loopback TCP listener that any client could use, unless the config opted
    in; warn loudly about every TCP listener without client certificates."""
    for listen in listens:
        if listen.kind != "tcp" or (tls is not None and tls.verify):
            continue
        if not is_loopback(listen.host) and not allow_unauthenticated_tcp:
            raise ConfigError(
                f"refusing to listen on {listen} without --tlsverify: anyone who can reach that address would "
                "control this host as root. Use --tlsverify, or set allow_unauthenticated_tcp = true in the "
                "[daemon] table of the config file to accept that.")
        log.warning("!!! %s serves the API %s WITHOUT --tlsverify: every client that can connect to it, "
                    "including any local user and any web page that gets past the origin checks, controls this "
                    "host as root. Use --tlsverify. !!!", listen, "over TLS" if tls else "in plain text")


class Server(uvicorn.Server):
    """uvicorn's server: TCP sockets with the config's TLS (if any), unix sockets without."""

    def __init__(self, config: uvicorn.Config, unix_sockets: list[socket.socket] = ()) -> None:
        super().__init__(config)
        self.unix_sockets = list(unix_sockets)

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if not self.started:
            return
        loop = asyncio.get_running_loop()
        config = self.config

        def create_protocol(_loop=None):
            return config.http_protocol_class(config=config, server_state=self.server_state,
                                              app_state=self.lifespan.state, _loop=_loop)

        for sock in self.unix_sockets:
            self.servers.append(await loop.create_server(create_protocol, sock=sock, ssl=None,
                                                         backlog=config.backlog))

    async def shutdown(self, sockets=None) -> None:
        for connection in list(OPEN_RAW_CONNECTIONS):
            connection.close()
        await super().shutdown(sockets)  # closes every server, the unix ones too


def make_server(app, unix_sockets: list[socket.socket] = (), tls: Tls | None = None, debug: bool = False) -> Server:
    ssl_options = {}
    if tls is not None:
        ssl_options = {"ssl_certfile": tls.cert, "ssl_context_factory": lambda _config, _default: ssl_context(tls)}
    config = uvicorn.Config(app, http=HijackingH11Protocol, lifespan="off", log_level="debug" if debug else "info",
                            access_log=debug, timeout_graceful_shutdown=2, server_header=False,
                            date_header=True, proxy_headers=False, **ssl_options)
    return Server(config, unix_sockets)


async def serve(app, sockets: list[socket.socket], tls: Tls | None = None, debug: bool = False) -> None:
    """Serve ``app`` on ``sockets``: the TCP ones with ``tls`` (if given), the unix ones plain."""
    tcp = [s for s in sockets if s.family != socket.AF_UNIX]
    unix = [s for s in sockets if s.family == socket.AF_UNIX]
    server = make_server(app, unix, tls, debug)
    await server.serve(sockets=tcp)


def run(app, sockets: list[socket.socket], tls: Tls | None = None, debug: bool = False) -> None:
    asyncio.run(serve(app, sockets, tls, debug))
