"""The graph workload: import, create on an image, changes, commit and export."""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
from contextlib import ExitStack
from pathlib import Path

from moorage.api.cli.bench import Bench, NamedDriver, Timer, sh
from moorage.core.sdk.archive import tree_tar
from moorage.core.sdk.errors import NotSupported
from moorage.core.sdk.layers import differ_for


def make_tree(root: Path, size_mb: int, files: int) -> None:
    """``size_mb`` MB in 1 MB files plus ``files`` small files in 100 directories."""
    (root / "big").mkdir(parents=True)
    block = os.urandom(1 << 20)
    for n in range(size_mb):
        (root / "big" / f"blob{n}").write_bytes(block[n % 256:] + block[: n % 256])
    for n in range(files):
        d = root / "small" / f"d{n % 100}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{n}").write_text(f"file {n}\n")


def tar_file(source: Path, dest: Path) -> Path:
    with open(dest, "wb") as out:
        for chunk in tree_tar(source, "."):
            out.write(chunk)
    return dest


def loop_btrfs(base: Path, stack: ExitStack) -> Path:
    """A btrfs filesystem on a loop image below ``base``, undone by ``stack``."""
    image, mountpoint = base / "loop-btrfs.img", base / "loop-btrfs"
    mountpoint.mkdir()
    subprocess.run(["truncate", "-s", "2G", str(image)], check=True)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], check=True, capture_output=True,
                          text=True).stdout.strip()
    stack.callback(subprocess.run, ["losetup", "-d", loop], capture_output=True)
    subprocess.run(["mount", "-t", "btrfs", loop, str(mountpoint)], check=True)
    stack.callback(subprocess.run, ["umount", "-l", str(mountpoint)], capture_output=True)
    return mountpoint


class GraphBench(Bench):
    """Graph drivers: import, create on an image, changes, commit and export on the same image.

    A driver the scratch root's filesystem cannot hold (btrfs) gets a second chance on a
    loop-mounted btrfs image (``--no-loop-btrfs``: skip it with its reason instead).
    """

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--size-mb", type=int, default=64, help="size of the imported image (default 64)")
        parser.add_argument("--files", type=int, default=5000, help="files of the image `changes` scans (5000)")
        parser.add_argument("--repeat", type=int, default=5, help="samples per operation (default 5)")
        parser.add_argument("--no-loop-btrfs", dest="loop_btrfs", action="store_false")

    def steps(self, args: argparse.Namespace) -> int:
        return 5 * args.repeat

    def prepare(self, args: argparse.Namespace, scratch: Path, stack: ExitStack) -> None:
        self.scratch, self.stack, self.btrfs = scratch, stack, None
        make_tree(scratch / "big-tree", args.size_mb, 0)
        make_tree(scratch / "many-tree", 0, args.files)
        self.big = tar_file(scratch / "big-tree", scratch / "big.tar")
        self.many = tar_file(scratch / "many-tree", scratch / "many.tar")

    def build(self, under_test: NamedDriver, root: Path, args: argparse.Namespace):
        try:
            return under_test.create(root)
        except NotSupported:
            if not args.loop_btrfs:
                raise
            if self.btrfs is None:
                self.btrfs = loop_btrfs(self.scratch, self.stack)
            try:
                return under_test.create(Path(tempfile.mkdtemp(dir=self.btrfs)))
            except NotSupported:
                pass
            raise

    def run(self, under_test: NamedDriver, root: Path, timer: Timer, args: argparse.Namespace) -> None:
        driver = self.build(under_test, root, args)
        differ = differ_for(driver)
        try:
            for n in range(args.repeat):
                driver.create(f"image{n}", None)
                with open(self.big, "rb") as tar:
                    timer.time("import", differ.apply_diff, f"image{n}", None, tar)
            for n in range(args.repeat):
                timer.time("create on image", driver.create, f"c{n}", "image0")
            driver.create("many", None)
            with open(self.many, "rb") as tar:
                differ.apply_diff("many", None, tar)
            for n in range(args.repeat):
                driver.create(f"many-c{n}", "many")
                path = driver.get(f"many-c{n}")
                for k in range(10):
                    (path / "small" / f"d{k}" / f"f{k}").write_text("changed\n")
                driver.put(f"many-c{n}")
                timer.time("changes", differ.changes, f"many-c{n}", "many")
            for n in range(args.repeat):
                path = driver.get(f"c{n}")
                (path / "new").mkdir()
                for k in range(10):
                    (path / "new" / f"m{k}").write_bytes(os.urandom(1 << 20))
                driver.put(f"c{n}")
                timer.time("commit 10 MB", commit, differ, f"c{n}", "image0")
            for _ in range(args.repeat):
                timer.time("export", export, driver, "image0")
        finally:
            driver.cleanup()

    def floor(self, timer: Timer, args: argparse.Namespace) -> dict[str, str]:
        for n in range(args.repeat):
            dest, new = self.scratch / f"floor-{n}", self.scratch / f"floor-new-{n}"
            dest.mkdir()
            new.mkdir()
            timer.time("import", sh, "tar", "-xf", str(self.big), "-C", str(dest))
            for k in range(10):
                (new / f"m{k}").write_bytes(os.urandom(1 << 20))
            # piped: GNU tar writing to /dev/null itself skips reading the files
            timer.time("commit 10 MB", sh, "sh", "-c", f"tar -cf - -C {new} . | cat >/dev/null")
            timer.time("export", sh, "sh", "-c", f"tar -cf - -C {dest} . | cat >/dev/null")
        return {"import": "tar -x of the same tar", "commit 10 MB": "tar -c of the same 10 MB",
                "export": "tar -c of the image's files"}


def drain(chunks) -> int:
    return sum(map(len, chunks))


def commit(differ, layer: str, parent: str) -> int:
    return drain(differ.diff(layer, parent))


def export(driver, layer: str) -> None:
    path = driver.get(layer)
    try:
        drain(tree_tar(path, "."))
    finally:
        driver.put(layer)
