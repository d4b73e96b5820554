"""``docker cp``: a container's files as tar archives (beyond 1.6: Docker 1.8's
``HEAD``/``GET``/``PUT /containers/{id}/archive``).

Every path is resolved inside the container's root as the container would resolve it, and
every read and write goes through ``core/sdk/archive.py`` — ``open_in_root``, its confined tree
walk and its safe extraction — in ``_walk`` and ``_extract`` only, so a stricter
implementation there applies here unchanged.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from moorage.core.sdk.archive import clean_name, extract_in_root, tree_tar_in_root
from moorage.core.sdk.errors import Forbidden, InvalidParameter, NotFound
from moorage.core.sdk.untrusted_tree import open_dir_in_root, open_in_root
from moorage.core.services.containers import ContainerService

#: Go's ``os.FileMode`` type bits, which the stat header carries
_GO_TYPE_BITS = ((stat.S_ISDIR, 1 << 31), (stat.S_ISLNK, 1 << 27), (stat.S_ISBLK, 1 << 26),
                 (stat.S_ISFIFO, 1 << 25), (stat.S_ISSOCK, 1 << 24), (stat.S_ISCHR, (1 << 26) | (1 << 21)))


@dataclass(frozen=True)
class PathStat:
    name: str
    size: int
    mode: int  # Go's os.FileMode
    mtime: str
    link_target: str

    def header(self) -> str:
        """The ``X-Docker-Container-Path-Stat`` value: base64 of the JSON object."""
        data = {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
                "linkTarget": self.link_target}
        return base64.b64encode(json.dumps(data).encode()).decode()


def go_mode(st: os.stat_result) -> int:
    mode = st.st_mode & 0o777
    if st.st_mode & stat.S_ISUID:
        mode |= 1 << 23
    if st.st_mode & stat.S_ISGID:
        mode |= 1 << 22
    if st.st_mode & stat.S_ISVTX:
        mode |= 1 << 20
    for test, bits in _GO_TYPE_BITS:
        if test(st.st_mode):
            mode |= bits
    return mode


class ContainerArchive:
    def __init__(self, containers: ContainerService) -> None:
        self.containers = containers
        self.graph = containers.graph

    def _split(self, path: str) -> tuple[str, str]:
        if not path:
            raise InvalidParameter("Bad parameter: path is required")
        clean = os.path.normpath("/" + path)
        parent, base = os.path.split(clean)
        return parent, base

    def _open_parent(self, rootfs, path: str) -> tuple[int, str]:
        parent, base = self._split(path)
        try:
            fd = open_in_root(rootfs, parent, os.O_RDONLY | os.O_DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Could not find the file {path} in container") from None
        return fd, base

    def stat(self, name: str, path: str) -> PathStat:
        container = self.containers.get(name)
        rootfs = self.graph.get(container.id)
        try:
            fd, base = self._open_parent(rootfs, path)
            try:
                return self._stat_at(fd, base, path)
            finally:
                os.close(fd)
        finally:
            self.graph.put(container.id)

    @staticmethod
    def _stat_at(dir_fd: int, base: str, path: str) -> PathStat:
        try:
            st = os.stat(base or ".", dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise NotFound(f"Could not find the file {path} in container") from None
        target = os.readlink(base, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
        mtime = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(st.st_mtime))
        return PathStat(name=base or "/", size=st.st_size, mode=go_mode(st), mtime=mtime, link_target=target)

    def get(self, name: str, path: str) -> tuple[PathStat, Iterator[bytes]]:
        """The stat of ``path`` and a tar of it (entries named from its base name)."""
        container = self.containers.get(name)
        rootfs = self.graph.get(container.id)
        try:
            dir_fd, base = self._open_parent(rootfs, path)
            try:
                found = self._stat_at(dir_fd, base, path)
            finally:
                os.close(dir_fd)
        except BaseException:
            self.graph.put(container.id)
            raise
        try:
            return found, self._walk(rootfs, path, lambda: self.graph.put(container.id))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"Could not find the file {path} in container") from None

    @staticmethod
    def _walk(rootfs, path: str, done) -> Iterator[bytes]:
        return tree_tar_in_root(rootfs, path, done=done)

    def put(self, name: str, path: str, body: BinaryIO, no_overwrite_dir_non_dir: bool = False) -> None:
        """Extract the tar ``body`` into the existing directory ``path``. With
        ``no_overwrite_dir_non_dir`` an entry that would replace a directory by a non-directory
        (or the reverse) fails the whole copy before anything is written."""
        container = self.containers.get(name)
        if container.host_config.read_only_rootfs:  # Docker's 403: the copy lands in the rootfs
            raise Forbidden("container rootfs is marked read-only")
        rootfs = self.graph.get(container.id)
        try:
            if no_overwrite_dir_non_dir:
                with tempfile.TemporaryFile(dir=self.containers.tmp) as spool:
                    shutil.copyfileobj(body, spool, 1 << 20)
                    spool.seek(0)
                    try:
                        dir_fd = open_dir_in_root(rootfs, path)
                    except FileNotFoundError:
                        raise NotFound(f"Could not find the file {path} in container") from None
                    except NotADirectoryError:
                        raise InvalidParameter(f"Bad parameter: extraction point {path} is not a directory") from None
                    try:
                        _check_no_type_change(spool, dir_fd)
                    finally:
                        os.close(dir_fd)
                    spool.seek(0)
                    self._extract(spool, rootfs, path)
            else:
                self._extract(body, rootfs, path)
        finally:
            self.graph.put(container.id)

    @staticmethod
    def _extract(body: BinaryIO, rootfs, path: str) -> None:
        try:
            extract_in_root(body, rootfs, path, allow_devices=False, same_owner=False)
        except NotADirectoryError:
            raise InvalidParameter(f"Bad parameter: extraction point {path} is not a directory") from None


def _check_no_type_change(spool: BinaryIO, dir_fd: int) -> None:
    """Docker's ``noOverwriteDirNonDir``: refuse an entry whose existing target is a directory
    while the entry is not (or the reverse). Targets are looked up inside the pinned directory
    without following symlinks."""
    try:
        with tarfile.open(fileobj=spool, mode="r|") as tar:
            for member in tar:
                rel = clean_name(member.name)
                if not rel:
                    continue
                try:
                    fd = open_in_root(f"/proc/self/fd/{dir_fd}", rel, os.O_PATH | os.O_NOFOLLOW)
                except OSError:
                    continue  # missing (or below a non-directory: the extraction refuses that)
                try:
                    is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
                finally:
                    os.close(fd)
                if is_dir != member.isdir():
                    what = "a directory with a non-directory" if is_dir else "a non-directory with a directory"
                    raise InvalidParameter(f"cannot overwrite {what}: {rel}")
    except tarfile.TarError as exc:
        raise InvalidParameter(f"the archive is not a valid tar: {exc}") from None
