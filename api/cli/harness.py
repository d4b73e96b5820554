"""A ``moorage daemon`` of one's own: a subprocess with its root, unix socket, pid file, config
and log under one directory, started, waited for (``/_ping``) and torn down with everything it
mounted. The one harness of the tests (tests/conftest.py's ``Daemon``), the bench scripts
(bench/) and ``moorage bench``.

A daemon made here never takes the host's default bridge nor reaches beyond this machine,
unless its config says otherwise: without a ``[network]`` table (and without ``-b``) its
network driver is ``none``, and without a ``[registry]`` table a name without a registry host
goes to a closed port on loopback, not to Docker Hub.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from moorage.core.sdk.mounts import unmount_below
from moorage.core.sdk.rootfs import make_busybox_rootfs, tar_directory

#: The ``moorage`` program, run by this interpreter.
MOORAGE = [sys.executable, "-m", "moorage.api.cli"]
NO_NETWORK = '\n[network]\ndriver = "none"\n'
NO_REGISTRY = '\n[registry]\ndefault = "http://127.0.0.1:1"\n'


def drivers_config(graph: str = "overlay", exec_driver: str = "native", registry: str | None = None) -> str:
    """The config of a daemon with these graph and exec drivers (and default registry)."""
    text = f'[graph]\ndriver = "{graph}"\n[exec]\ndriver = "{exec_driver}"\n'
    return text + (f'[registry]\ndefault = "{registry}"\n' if registry else "")


class DaemonFailed(RuntimeError):
    """The daemon exited, or did not answer ``/_ping`` in time; the message ends with its log."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_text(data: dict) -> str:
    """A config dict as TOML (tables of scalars, lists and sub-tables: what a daemon config holds)."""
    lines: list[str] = []

    def table(prefix: str, values: dict) -> None:
        lines.append(f"[{prefix}]")
        lines.extend(f"{k} = {json.dumps(v)}" for k, v in values.items() if not isinstance(v, dict))
        for k, v in values.items():
            if isinstance(v, dict):
                table(f"{prefix}.{k}", v)

    for name, values in data.items():
        table(name, values)
    return "\n".join(lines) + "\n"


def progress_objects(text: str) -> list[dict]:
    """The JSON objects of a v1.6 progress stream (concatenated, as Docker sends them)."""
    decoder, out = json.JSONDecoder(), []
    text = text.strip()
    while text:
        obj, end = decoder.raw_decode(text)
        out.append(obj)
        text = text[end:].lstrip()
    return out


class DaemonProcess:
    """A ``moorage daemon`` subprocess below ``base``; ``tcp``: it listens on a loopback port too."""

    #: seconds ``start`` waits for ``/_ping`` (a root with many containers restores slowly)
    ready_timeout: float = 120

    def __init__(self, base: Path, config: str = "", flags: list[str] | None = None,
                 env: dict[str, str] | None = None, tcp: bool = True) -> None:
        self.base = base
        self.root = base / "root"
        self.sock = base / "moorage.sock"
        self.port = free_port() if tcp else None
        self.pidfile = base / "moorage.pid"
        self.config_path = base / "daemon.toml"
        self.log_path = base / "daemon.log"
        self.flags = flags or []
        if "[network" not in config and "-b" not in self.flags:
            config += NO_NETWORK
        if "[registry" not in config:
            config += NO_REGISTRY
        base.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(config)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.sock}"

    def argv(self) -> list[str]:
        listen = ["-H", self.unix_url] + (["-H", f"tcp://127.0.0.1:{self.port}"] if self.port else [])
        return [*MOORAGE, "daemon", "--config", str(self.config_path), "-g", str(self.root), *listen,
                "-p", str(self.pidfile), *self.flags]

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait: bool = True, timeout: float | None = None) -> Self:
        """Start it; with ``wait``, until it answers (``DaemonFailed`` if it does not, and no
        daemon is left running then, whatever interrupted the wait)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=self.env)
        if wait:
            try:
                self.wait_ready(timeout)
            except BaseException:
                self.kill()
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Until the daemon answers ``/_ping``; ``DaemonFailed`` if it exits or ``timeout``
        (default ``ready_timeout``) seconds pass."""
        timeout = timeout or self.ready_timeout
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = self.proc.returncode if self.proc else None
                raise DaemonFailed(f"daemon exited with {code}:\n{self.log()}")
            try:
                with self.client() as client:
                    if client.get("/_ping").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise DaemonFailed(f"daemon did not answer /_ping within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tracebacks(self) -> int:
        """Tracebacks in its log: each one a bug, whatever the client was answered."""
        return self.log().count("Traceback (most recent call last)")

    def client(self, tcp: bool = False, timeout: float = 60) -> httpx.Client:
        if tcp:
            return httpx.Client(base_url=self.url, timeout=timeout)
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.sock)), base_url="http://moorage",
                            timeout=timeout)

    def import_image(self, tar: Path, repo: str = "busybox") -> str:
        """Import ``tar`` as ``repo`` through the API; the new image's short id."""
        with self.client(timeout=120) as client:
            response = client.post("/images/create", params={"fromSrc": "-", "repo": repo}, content=tar.read_bytes())
        response.raise_for_status()
        last = (progress_objects(response.text) or [{}])[-1]
        if "status" not in last or "error" in last:
            raise DaemonFailed(f"importing {tar} failed: {response.text}")
        return last["status"]

    def import_busybox(self) -> str:
        """Import a busybox rootfs (``moorage.core.sdk.rootfs``) as ``busybox``; its short id."""
        rootfs = make_busybox_rootfs(self.base / "busybox")
        return self.import_image(tar_directory(rootfs, self.base / "busybox.tar"))

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int | None:
        """Signal the daemon and wait for it (SIGKILL after ``timeout`` seconds); its exit status."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def kill(self) -> None:
        """SIGKILL: the daemon gets no chance to clean up (containers keep running)."""
        if self.running():
            self.proc.kill()
            self.proc.wait(10)

    def remove_all_containers(self, timeout: float = 60) -> list[str]:
        """Kill and remove every container (containers outlive the daemon by design); the ids
        of those still there after (all of them, unasked, if the daemon is not running)."""
        if not self.running():
            return []
        try:
            with self.client(timeout=timeout) as client:
                for row in client.get("/containers/json", params={"all": 1}).json():
                    try:  # one container that fails to go must not keep the others
                        client.post(f"/containers/{row['Id']}/kill")
                        client.delete(f"/containers/{row['Id']}", params={"v": 1})
                    except httpx.HTTPError:
                        pass
                return [row["Id"] for row in client.get("/containers/json", params={"all": 1}).json()]
        except (httpx.HTTPError, ValueError) as exc:
            return [f"(the container list: {exc})"]

    def dispose(self, mounts_below: Path | None = None, remove: bool = True, restart_dead: bool = False) -> list[str]:
        """The end: its containers removed, the daemon stopped, whatever is mounted below
        ``mounts_below`` (its directory by default) unmounted, and with ``remove`` the directory
        removed. Returns the containers that could not be removed (``remove_all_containers``).
        ``restart_dead``: a daemon found dead is started again first, to remove its containers
        (they outlive it: live restore)."""
        if restart_dead and self.proc is not None and not self.running():
            try:
                self.start(timeout=300)  # a root with hundreds of containers restores slowly
            except DaemonFailed as exc:
                print(f"the daemon was not restarted to remove its containers: {exc}"[:2000], file=sys.stderr)
        left = self.remove_all_containers()
        if left:
            print(f"{len(left)} container(s) of the daemon in {self.base} could not be removed and may still run: "
                  f"{', '.join(left[:5])}", file=sys.stderr)
        self.stop()
        unmount_below(mounts_below or self.base)
        if remove:
            shutil.rmtree(self.base, ignore_errors=True)
        return left

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.dispose()
