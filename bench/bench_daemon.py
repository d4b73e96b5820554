"""A daemon of a bench script's own (fuzz_api, soak, load): a root, a unix socket and a config
under one directory, started, waited for, and cleaned up (containers, mounts) at the end."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CONFIG = '[graph]\ndriver = "overlay"\n[exec]\ndriver = "native"\n{network}[registry]\ndefault = "{registry}"\n'
#: no networking: bench daemons run beside others and must not take the host's default bridge
NO_NETWORK = '[network]\ndriver = "none"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchDaemon:
    def __init__(self, base: Path, registry: str = "http://127.0.0.1:1", flags: list[str] = (),
                 graph: str = "overlay", network: str = NO_NETWORK) -> None:
        """``network``: the config's ``[network]`` tables (a bridge of the script's own)."""
        self.base = base
        self.root = base / "root"
        self.sock = base / "moorage.sock"
        self.log_path = base / "daemon.log"
        self.config = base / "daemon.toml"
        self.config.write_text(CONFIG.format(registry=registry, network=network).replace('"overlay"', f'"{graph}"'))
        self.flags = list(flags)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        argv = [sys.executable, "-m", "moorage.api.cli", "daemon", "--config", str(self.config), "-g", str(self.root),
                "-H", f"unix://{self.sock}", "-p", str(self.base / "moorage.pid"), *self.flags]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.wait_answering(timeout)
        if self.proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
        with self.client(5) as api:
            try:
                if api.get("/_ping").status_code == 200:
                    return
            except httpx.TransportError:
                pass
        raise RuntimeError(f"the daemon did not answer within {timeout} s")

    def wait_answering(self, timeout: float) -> None:
        """Until the running daemon answers ``/_ping`` (or ``timeout`` seconds pass)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc is not None and self.proc.poll() is None:
            try:
                with self.client(5) as api:
                    if api.get("/_ping").status_code == 200:
                        return
            except httpx.TransportError:
                time.sleep(0.05)

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.sock)), base_url="http://moorage",
                            timeout=timeout)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tracebacks(self) -> int:
        return self.log().count("Traceback (most recent call last)")

    def import_busybox(self) -> str:
        """Import a busybox rootfs as ``busybox``; its image id."""
        from moorage.core.testing.rootfs import make_busybox_rootfs, tar_directory

        tar = tar_directory(make_busybox_rootfs(self.base / "busybox"), self.base / "busybox.tar").read_bytes()
        with self.client() as api:
            answer = api.post("/images/create", params={"fromSrc": "-", "repo": "busybox"}, content=tar)
            answer.raise_for_status()
            if '"error"' in answer.text:
                raise RuntimeError(answer.text)
            return api.get("/images/busybox/json").json()["id"]

    def stop(self) -> None:
        """Remove every container, stop the daemon, unmount whatever is left below ``base``.
        A daemon found dead is started again first: its containers outlive it (live restore)."""
        if self.proc is not None and self.proc.poll() is not None:
            try:
                self.start(timeout=300)  # a root with hundreds of containers restores slowly
            except RuntimeError as exc:
                print(f"bench daemon: not restarted to remove its containers: {exc}", file=sys.stderr)
        left: list[str] = []
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.wait_answering(300)  # interrupted while it started, it may not listen yet
                with self.client(120) as api:
                    for row in api.get("/containers/json", params={"all": 1}).json():
                        try:  # one container that fails to go must not keep the others
                            api.post(f"/containers/{row['Id']}/kill")
                            api.delete(f"/containers/{row['Id']}")
                        except httpx.HTTPError:
                            pass
                    left = [row["Id"] for row in api.get("/containers/json", params={"all": 1}).json()]
        except (httpx.HTTPError, ValueError) as exc:
            left = [f"(the container list: {exc})"]
        if left:
            print(f"bench daemon: {len(left)} container(s) could not be removed and may still run: "
                  f"{', '.join(left[:5])}", file=sys.stderr)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        with open("/proc/self/mounts") as f:
            points = [line.split()[1] for line in f if line.split()[1].startswith(str(self.base) + "/")]
        for point in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)
