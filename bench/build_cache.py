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
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from moorage.api.cli.harness import DaemonProcess, drivers_config

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--graph", default="overlay")
    parser.add_argument("--exec", dest="exec_driver", default="native")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-build-"))
    daemon = DaemonProcess(base / "daemon", drivers_config(args.graph, args.exec_driver), tcp=False)
    try:
        daemon.start()
        daemon.import_busybox()
        client = daemon.client(timeout=120)
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
        daemon.dispose()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
