"""The ``moorage`` command: ``moorage daemon [flags]`` runs the daemon; the other subcommands
are clients of its API (``moorage version``, ``moorage info``)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from moorage.api.cli import bench, inventory
from moorage.api.http.params import go_bool
from moorage.core import __version__
from moorage.core.kernel.config import DEFAULT_CONFIG_PATH, load
from moorage.core.kernel.kernel import Kernel, check_pidfile
from moorage.core.sdk.errors import InvalidParameter, MoorageError
from moorage.core.sdk.store import atomic_write

log = logging.getLogger("moorage")

DEFAULT_CLIENT_HOST = "unix:///var/run/moorage.sock"


def flag_bool(value: str) -> bool:
    """A boolean flag's value, as Go's flag package parsed it (``go_bool``)."""
    try:
        return go_bool(value)
    except InvalidParameter as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _bool_flag(parser, *names, dest, help):
    parser.add_argument(*names, dest=dest, nargs="?", const=True, default=None, type=flag_bool, help=help)


def daemon_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("daemon", help="run the daemon", description="Run the moorage daemon. Flags mirror "
                       "Docker 0.6's and override the config file, which overrides the embedded defaults.")
    p.add_argument("--config", type=Path, help=f"TOML config file (default {DEFAULT_CONFIG_PATH}, used if present)")
    p.add_argument("-H", "--host", dest="hosts", action="append", metavar="HOST",
                   help="unix:///path or tcp://host:port to listen on; repeatable (default unix:///var/run/moorage.sock)")
    p.add_argument("-g", "--graph", dest="root", help="root directory of the daemon's state (default /var/lib/moorage)")
    p.add_argument("-s", "--storage-driver", dest="storage_driver", help="graph driver name")
    p.add_argument("-e", "--exec-driver", dest="exec_driver", help="exec driver name")
    p.add_argument("-b", "--bridge", dest="bridge", help="bridge interface for containers; 'none' disables networking")
    p.add_argument("--bip", dest="bip", help="the bridge's address in CIDR form")
    p.add_argument("--ip", "-ip", dest="default_ip", help="default host IP of published ports (default 0.0.0.0)")
    p.add_argument("--dns", "-dns", dest="dns", action="append", help="DNS server for containers; repeatable")
    p.add_argument("-p", "--pidfile", dest="pidfile", help="pid file (default /var/run/moorage.pid)")
    p.add_argument("--registry-mirror", dest="registry_mirror", help="registry for names without a host")
    _bool_flag(p, "-r", "--restart", dest="restart", help="restart containers that were running (default true)")
    _bool_flag(p, "--api-enable-cors", "-api-enable-cors", dest="cors", help="send CORS headers")
    _bool_flag(p, "--tls", dest="tls", help="serve tcp:// listeners over TLS (implied by --tlsverify)")
    _bool_flag(p, "--tlsverify", dest="tlsverify",
               help="TLS, and only clients with a certificate signed by --tlscacert get in")
    p.add_argument("--tlscacert", dest="tlscacert", help="trust certificates signed by this CA "
                   "(default $DOCKER_CERT_PATH/ca.pem or ~/.docker/ca.pem)")
    p.add_argument("--tlscert", dest="tlscert", help="the daemon's TLS certificate (default cert.pem there)")
    p.add_argument("--tlskey", dest="tlskey", help="the daemon's TLS key (default key.pem there)")
    _bool_flag(p, "-D", "--debug", dest="debug", help="debug logging")
    return p


#: daemon flag dest -> dotted config key (the flag > file > default precedence)
FLAG_KEYS = {
    "hosts": "daemon.hosts",
    "root": "daemon.root",
    "storage_driver": "graph.driver",
    "exec_driver": "exec.driver",
    "bip": "network.bridge.bip",
    "default_ip": "daemon.default_ip",
    "dns": "daemon.dns",
    "pidfile": "daemon.pidfile",
    "registry_mirror": "registry.default",
    "restart": "daemon.restart",
    "cors": "daemon.api_enable_cors",
    "tls": "daemon.tls",
    "tlsverify": "daemon.tlsverify",
    "tlscacert": "daemon.tlscacert",
    "tlscert": "daemon.tlscert",
    "tlskey": "daemon.tlskey",
    "debug": "daemon.debug",
}


def flag_overrides(args: argparse.Namespace) -> dict:
    overrides = {key: getattr(args, dest) for dest, key in FLAG_KEYS.items() if getattr(args, dest) is not None}
    if args.bridge is not None:
        # Docker's -b: a bridge name for the bridge driver, or "none" for no networking
        if args.bridge == "none":
            overrides["network.driver"] = "none"
        else:
            overrides["network.bridge.name"] = args.bridge
    return overrides


def run_daemon(args: argparse.Namespace) -> int:
    from moorage.api.http.app import create_app
    from moorage.api.http.server import (
        activation_sockets,
        bind,
        check_exposure,
        parse_host,
        run,
        tls_settings,
        unlink_unix,
    )

    path = args.config if args.config is not None else DEFAULT_CONFIG_PATH
    config = load(path, flag_overrides(args), required=args.config is not None)
    logging.basicConfig(level=logging.DEBUG if config.daemon.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listens = [parse_host(h) for h in config.daemon.hosts]
    tls = tls_settings(config.daemon)
    check_exposure(listens, tls, config.daemon.allow_unauthenticated_tcp)
    activated = activation_sockets()  # before any child: the variables are dropped
    pidfile = config.daemon.pidfile
    check_pidfile(pidfile)
    kernel = Kernel(config)
    kernel.start()
    sockets = []
    try:
        if pidfile:
            pidfile.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(pidfile, f"{os.getpid()}\n".encode(), 0o644)
        if activated:  # started by moorage.socket: systemd's sockets replace -H
            sockets, listens = activated, []  # systemd owns the socket files
            log.info("serving %d socket(s) passed by systemd", len(sockets))
        else:
            sockets = [bind(listen) for listen in listens]
        for listen in listens:
            log.info("listening on %s", listen)
        # uvicorn re-raises the signal that stopped it once it restored the previous handlers:
        # make those handlers no-ops so that the clean-up below runs and the exit status is 0.
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: None)
        run(create_app(kernel), sockets, tls, debug=config.daemon.debug)
    finally:
        for sock in sockets:
            sock.close()
        unlink_unix(listens)
        kernel.shutdown()
        if pidfile:
            try:
                pidfile.unlink()
            except FileNotFoundError:
                pass
    return 0


# -- the client ------------------------------------------------------------------------------
def client_for(host: str):
    import httpx

    from moorage.api.http.server import parse_host

    listen = parse_host(host)
    if listen.kind == "unix":
        return httpx.Client(transport=httpx.HTTPTransport(uds=listen.path), base_url="http://moorage", timeout=60)
    return httpx.Client(base_url=f"http://{listen.host}:{listen.port}", timeout=60)


def _get(args, path: str) -> dict:
    with client_for(args.host) as client:
        response = client.get(path)
    if response.status_code >= 400:
        raise MoorageError(f"Error: {response.text.strip()}")
    return response.json()


def run_version(args) -> int:
    print(f"Client version: {__version__}")
    server = _get(args, "/version")
    print(f"Server version: {server.get('Version', '')}")
    print(f"Git commit: {server.get('GitCommit', '')}")
    print(f"Runtime: {server.get('GoVersion', '')}")
    return 0


def run_info(args) -> int:
    info = _get(args, "/info")
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"Containers: {info.get('Containers', 0)}")
    print(f"Images: {info.get('Images', 0)}")
    for family, name in info.get("Drivers", {}).items():
        print(f"{family.capitalize()} driver: {name or '(none)'}")
    for label, value in info.get("DriverStatus", []):
        print(f" {label}: {value}")
    print(f"Debug mode: {bool(info.get('Debug'))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moorage",
                                     description="A container engine serving the Docker Remote API v1.6.")
    parser.add_argument("-v", "--version", action="version", version=f"moorage {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    daemon_parser(sub)
    for name, helptext in (("version", "show client and server versions"), ("info", "show daemon information")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("-H", "--host", default=os.environ.get("MOORAGE_HOST", DEFAULT_CLIENT_HOST),
                       help="daemon socket (default $MOORAGE_HOST or unix:///var/run/moorage.sock)")
        if name == "info":
            p.add_argument("--json", action="store_true", help="print the raw JSON")
    inventory.add_parsers(sub)
    bench.add_parser(sub)
    return parser


COMMANDS = {"daemon": run_daemon, "version": run_version, "info": run_info, **inventory.COMMANDS, **bench.COMMANDS}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("daemon", "bench"):
        # `moorage drivers | head` ends quietly; the daemon and bench run drivers in-process,
        # whose writes to a closed socket (a monitor or daemon that went away) must stay EPIPE
        # errors, not a silent death by SIGPIPE
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return COMMANDS[args.command](args)
    except MoorageError as exc:
        print(f"moorage: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"moorage: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # httpx errors: the daemon is not there
        if type(exc).__module__.startswith("httpx"):
            print(f"moorage: cannot reach the daemon at {getattr(args, 'host', '?')}: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
