"""The registry pull benchmark: pull and unpack a single-layer image from a local registry.

Starts Debian's ``docker-registry`` on 127.0.0.1 (storage in a temp dir), uploads an image whose
one gzip layer holds a file of random bytes (200 MB by default), then times the ``v2`` client
pulling it into a store that extracts each layer tar into a directory (download, digest checks,
gunzip and unpacking included). Prints the median of N runs in MB of compressed blob per second,
beside ``skopeo copy`` of the same image into an OCI directory when skopeo is installed.
Target (issue 6): at least 150 MB/s. Run: ``.venv/bin/python bench/registry_pull.py [-s 200] [-n 3]``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

from moorage.core.sdk.driver import DriverContext
from moorage.core.sdk.hookspecs.registry import AuthConfig
from moorage.core.testing.registry.servers import RegistryServer
from moorage.drivers.registry.v2 import V2Client, V2Options


class ExtractingStore:
    """A PullTarget that unpacks every layer into ``<root>/<id>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True)
        self.extract_seconds = 0.0

    def has_image(self, image_id: str) -> bool:
        return (self.root / image_id).exists()

    def add_image(self, layer, tar) -> None:
        start = time.perf_counter()
        with tarfile.open(fileobj=tar, mode="r|") as archive:
            archive.extractall(self.root / layer.id, filter="tar")
        self.extract_seconds += time.perf_counter() - start

    def tag(self, repository: str, tag: str, image_id: str) -> None:
        pass


def upload(registry: RegistryServer, repo: str, data: bytes) -> dict:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    location = httpx.post(f"{registry.url}/v2/{repo}/blobs/uploads/").headers["location"]
    r = httpx.put(f"{location}&digest={digest}", content=data, timeout=120)
    r.raise_for_status()
    return {"digest": digest, "size": len(data)}


def seed(registry: RegistryServer, repo: str, megabytes: int) -> int:
    payload = os.urandom(megabytes * 1000 * 1000)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("random.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer = buf.getvalue()
    blob = gzip.compress(layer, compresslevel=1, mtime=0)
    layer_desc = upload(registry, repo, blob)
    config = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
              "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]}}
    config_desc = upload(registry, repo, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config_desc},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", **layer_desc}]}
    httpx.put(f"{registry.url}/v2/{repo}/manifests/latest", content=json.dumps(manifest).encode(),
              headers={"Content-Type": manifest["mediaType"]}).raise_for_status()
    return len(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-s", "--size", type=int, default=200, help="layer payload in MB")
    parser.add_argument("-n", "--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="moorage-bench-") as tmp:
        base = Path(tmp)
        (base / "registry").mkdir()
        registry = RegistryServer(base / "registry")
        try:
            blob_size = seed(registry, "bench/big", args.size)
            mb = blob_size / 1e6
            print(f"image: one gzip layer of {mb:.2f} MB ({args.size} MB payload), registry {registry.url}")
            times, extracting = [], []
            for run in range(args.runs):
                home = base / f"client-{run}"
                home.mkdir()
                client = V2Client(DriverContext.standalone(V2Client, home, V2Options()))
                store = ExtractingStore(base / f"store-{run}")
                start = time.perf_counter()
                client.pull(f"{registry.host}/bench/big", "latest", AuthConfig(), store, lambda m: None)
                times.append(time.perf_counter() - start)
                extracting.append(store.extract_seconds)
                shutil.rmtree(base / f"store-{run}")
            median = statistics.median(times)
            print(f"{'moorage v2 pull + unpack':<36} median {median:6.3f} s  {mb / median:7.1f} MB/s "
                  f"(runs: {', '.join(f'{t:.3f}' for t in times)})")
            fetch = statistics.median(t - e for t, e in zip(times, extracting, strict=True))
            print(f"{'  of which download+verify+gunzip':<36} median {fetch:6.3f} s  {mb / fetch:7.1f} MB/s; "
                  f"tar extraction by the store {statistics.median(extracting):.3f} s")
            print(f"load average while measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
            if shutil.which("skopeo"):
                times = []
                for run in range(args.runs):
                    dest = base / f"oci-{run}"
                    start = time.perf_counter()
                    subprocess.run(["skopeo", "copy", "--src-tls-verify=false",
                                    f"docker://{registry.host}/bench/big:latest", f"oci:{dest}:latest"],
                                   check=True, capture_output=True)
                    times.append(time.perf_counter() - start)
                    shutil.rmtree(dest)
                median = statistics.median(times)
                print(f"{'skopeo copy to an OCI dir (no unpack)':<36} median {median:6.3f} s  {mb / median:7.1f} MB/s")
            else:
                print("skopeo is not installed: no comparison")
        finally:
            registry.stop()


if __name__ == "__main__":
    main()
