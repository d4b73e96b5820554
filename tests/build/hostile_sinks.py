"""The builder's ways of applying archives, for the hostile-archive property suite
(``moorage.core.testing.archives``, which knows drivers only): a ``POST /build`` context, and
``ADD x.tar`` into a container root. Each sink's ``apply`` takes the archive's bytes, and
``check`` asserts its own invariant (``check_hostile`` calls both)."""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

from moorage.plugins.builder.add import add_local
from moorage.plugins.builder.context import build_context


class ContextSink:
    """Applies archives as a ``POST /build`` context (``plugins.builder.context``)."""

    def __init__(self, root: Path) -> None:
        self.home = root / "builder"  # the builder feature's own directory under the daemon root
        self.home.mkdir(parents=True, exist_ok=True)  # made once, before the canaries are counted

    def apply(self, data: bytes) -> None:
        with build_context(self.home, io.BytesIO(data)):
            pass

    def check(self) -> None:
        pass


class AddSink:
    """Applies archives as ``ADD x.tar /`` (and ``ADD x.tar /x/y``) into a container root."""

    def __init__(self, base: Path, dest: str = "/") -> None:
        self.base = base
        self.dest = dest
        base.mkdir(parents=True, exist_ok=True)

    def apply(self, data: bytes) -> None:
        rootfs = self.base / "rootfs"
        shutil.rmtree(rootfs, ignore_errors=True)
        rootfs.mkdir()
        (rootfs / "x" / "y").mkdir(parents=True)
        os.symlink("/x", rootfs / "link")  # absolute: the container's own /x
        source = self.base / "x.tar"
        source.write_bytes(data)
        add_local(source, rootfs, "x.tar", self.dest)

    def check(self) -> None:
        pass
