"""Listening sockets (``-H``) and the uvicorn server that serves the app on them."""

from __future__ import annotations

import asyncio
import grp
import ipaddress
import logging
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from ..core.errors import ConfigError
from .hijack import OPEN_RAW_CONNECTIONS, HijackingH11Protocol

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
        try:
            if not ipaddress.ip_address(listen.host).is_loopback:
                log.warning("listening on %s: anyone who can reach it controls this host as root", listen)
        except ValueError:
            log.warning("listening on %s (not a loopback address)", listen)
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


class Server(uvicorn.Server):
    async def shutdown(self, sockets=None) -> None:
        for connection in list(OPEN_RAW_CONNECTIONS):
            connection.close()
        await super().shutdown(sockets)


def make_server(app, debug: bool = False) -> Server:
    config = uvicorn.Config(app, http=HijackingH11Protocol, lifespan="off", log_level="debug" if debug else "info",
                            access_log=debug, timeout_graceful_shutdown=2, server_header=False,
                            date_header=True, proxy_headers=False)
    return Server(config)


async def serve(app, sockets: list[socket.socket], debug: bool = False) -> None:
    server = make_server(app, debug)
    await server.serve(sockets=sockets)


def run(app, sockets: list[socket.socket], debug: bool = False) -> None:
    asyncio.run(serve(app, sockets, debug))
