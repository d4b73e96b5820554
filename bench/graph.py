"""Graph driver benchmarks: prints a table of figures per driver (not a test).

    .venv/bin/python bench/graph.py [--drivers vfs,overlay,btrfs] [--size-mb 200] [--files 20000]

Per driver: import of a SIZE MB layer tar (apply_diff, MB/s), create a layer on that image,
get+put of the new layer, ``changes`` with 10 changed files in a FILES-file image, commit
(``diff``) of 10 MB of changes, export of the image (``tree_tar``, MB/s). btrfs runs on a
loop-mounted btrfs image made (and removed) by the script. Needs root.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from moorage.core.archive import tree_tar
from moorage.core.driver import NoOptions
from moorage.core.layers import differ_for
from moorage.drivers.graph.btrfs import BtrfsDriver
from moorage.drivers.graph.overlay import OverlayDriver
from moorage.drivers.graph.vfs import VfsDriver

DRIVERS = {"vfs": VfsDriver, "overlay": OverlayDriver, "btrfs": BtrfsDriver}


def timed(fn: Callable[[], object], repeat: int = 1) -> float:
    """Median seconds of ``repeat`` runs."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def make_tree(root: Path, size_mb: int, files: int) -> None:
    """``size_mb`` MB in 1 MB files plus ``files`` small files in 100 directories."""
    root.mkdir(parents=True)
    (root / "big").mkdir()
    block = os.urandom(1 << 20)
    for n in range(size_mb):
        (root / "big" / f"blob{n}").write_bytes(block[n % 256:] + block[: n % 256])
    for n in range(files):
        d = root / "small" / f"d{n % 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n}").write_text(f"file {n}\n")


def tar_of(root: Path) -> bytes:
    return b"".join(tree_tar(root, "."))


def bench(name: str, home: Path, big_tar: bytes, many_tar: bytes, size_mb: int) -> dict[str, str]:
    driver = DRIVERS[name](home, NoOptions(), {"root": home})
    differ = differ_for(driver)
    row: dict[str, str] = {"driver": name}
    try:
        driver.create("image", None)
        seconds = timed(lambda: differ.apply_diff("image", None, io.BytesIO(big_tar)))
        row["import MB/s"] = f"{size_mb / seconds:.0f}"

        counter = iter(range(10**6))

        def create() -> None:
            driver.create(f"c{next(counter)}", "image")
        row["create on image ms"] = f"{timed(create, 5) * 1000:.1f}"

        def get_put() -> None:
            driver.get("c0")
            driver.put("c0")
        row["get+put ms"] = f"{timed(get_put, 10) * 1000:.2f}"

        driver.create("many", None)
        differ.apply_diff("many", None, io.BytesIO(many_tar))
        driver.create("many-c", "many")
        path = driver.get("many-c")
        for n in range(10):
            (path / "small" / f"d{n}" / f"f{n}").write_text("changed\n")
        driver.put("many-c")
        row["changes (10 in 20k) ms"] = f"{timed(lambda: differ.changes('many-c', 'many'), 3) * 1000:.1f}"

        driver.create("commit", "image")
        path = driver.get("commit")
        (path / "new").mkdir()
        for n in range(10):
            (path / "new" / f"m{n}").write_bytes(os.urandom(1 << 20))
        driver.put("commit")
        row["commit 10 MB ms"] = f"{timed(lambda: sum(map(len, differ.diff('commit', 'image'))), 3) * 1000:.0f}"

        def export() -> None:
            path = driver.get("image")
            try:
                for _ in tree_tar(path, "."):
                    pass
            finally:
                driver.put("image")
        row["export MB/s"] = f"{size_mb / timed(export):.0f}"
    finally:
        driver.cleanup()
    return row


def btrfs_home(base: Path):
    image, mnt = base / "btrfs.img", base / "btrfs"
    mnt.mkdir()
    subprocess.run(["truncate", "-s", "2G", str(image)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    subprocess.run(["mount", loop, str(mnt)], check=True)

    def undo() -> None:
        subprocess.run(["umount", str(mnt)], check=False)
        subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
    return mnt / "home", undo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drivers", default="vfs,overlay,btrfs")
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=20000)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="moorage-bench-"))
    rows = []
    try:
        make_tree(base / "big", args.size_mb, 0)
        make_tree(base / "many", 0, args.files)
        big_tar, many_tar = tar_of(base / "big"), tar_of(base / "many")
        shutil.rmtree(base / "big")
        shutil.rmtree(base / "many")
        for name in args.drivers.split(","):
            undo = None
            if name == "btrfs":
                home, undo = btrfs_home(base)
            else:
                home = base / name
            home.mkdir(parents=True)
            try:
                rows.append(bench(name, home, big_tar, many_tar, args.size_mb))
            finally:
                shutil.rmtree(home, ignore_errors=True)
                if undo:
                    undo()
    finally:
        for point in sorted((line.split()[1] for line in open("/proc/self/mounts")
                             if line.split()[1].startswith(str(base))), key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False)
        shutil.rmtree(base, ignore_errors=True)
    columns = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in columns]
    print(" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    print("-|-".join("-" * w for w in widths))
    for r in rows:
        print(" | ".join(r[c].ljust(w) for c, w in zip(columns, widths, strict=True)))


if __name__ == "__main__":
    main()
