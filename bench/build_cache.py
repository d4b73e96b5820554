"""A 10-step build that hits the cache: how long the cached build takes through the API.

Starts a daemon on a scratch root (``[network] driver = "none"``), imports the busybox image,
builds a Dockerfile of 10 steps (RUN, ADD and metadata steps) once to fill the cache, then
rebuilds it ``--rounds`` times and prints the figures of the cached builds (every step a hit).

    .venv/bin/python bench/build_cache.py [--rounds 10] [--graph overlay] [--exec native]
"""

from __future__ import annotations

import argparse
import io
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from moorage.core.sdk.rootfs import make_busybox_rootfs, tar_directory

CONFIG = '[graph]\ndriver = "{graph}"\n[exec]\ndriver = "{exec}"\n[network]\ndriver = "none"\n'
DOCKERFILE = """FROM busybox
MAINTAINER bench
ENV GREETING hello
ADD data /data
RUN echo $GREETING > /greeting
RUN mkdir -p /app
WORKDIR /app
EXPOSE 8080
USER daemon
CMD ["cat", "/greeting"]
"""


def context() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in (("Dockerfile", DOCKERFILE.encode()), ("data/a.txt", b"a" * 4096)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def unmount_below(path: Path) -> None:
    prefix = str(path.resolve())
    points = [line.split()[1] for line in open("/proc/self/mounts")]
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--graph", default="overlay")
    parser.add_argument("--exec", dest="exec_driver", default="native")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-build-"))
    proc = None
    try:
        rootfs = make_busybox_rootfs(base / "rootfs")
        tar = tar_directory(rootfs, base / "busybox.tar")
        sock = base / "bench.sock"
        (base / "daemon.toml").write_text(CONFIG.format(graph=args.graph, exec=args.exec_driver))
        proc = subprocess.Popen([sys.executable, "-m", "moorage.api.cli", "daemon", "--config",
                                 str(base / "daemon.toml"), "-g", str(base / "root"), "-H", f"unix://{sock}",
                                 "-p", str(base / "pid")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(sock)), base_url="http://moorage", timeout=120)
        for _ in range(300):
            try:
                if client.get("/_ping").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        client.post("/images/create", params={"fromSrc": "-", "repo": "busybox"}, content=tar.read_bytes())
        body = context()
        t0 = time.perf_counter()
        first = client.post("/build", params={"rm": 1}, content=body).text
        cold = time.perf_counter() - t0
        if "Successfully built" not in first:
            sys.exit(f"the first build failed:\n{first}")
        samples = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            text = client.post("/build", content=body).text
            samples.append(time.perf_counter() - t0)
            if text.count(" ---> Using cache") != 9:
                sys.exit(f"a rebuild missed the cache:\n{text}")
        ms = sorted(s * 1000 for s in samples)
        print(f"build of 10 steps ({args.graph}/{args.exec_driver}): first (no cache) {cold * 1000:.0f} ms")
        print(f"cached rebuild, {args.rounds} rounds: median {statistics.median(ms):.1f} ms   "
              f"max {ms[-1]:.1f} ms   min {ms[0]:.1f} ms")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        unmount_below(base)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
