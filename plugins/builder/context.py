"""The build context: a directory holding the Dockerfile and what ADD may read.

It comes from the request body (a tar, plain or compressed, detected by magic bytes), from
``git clone`` of a ``remote=`` repository, or from a ``remote=`` http(s) URL that is the
Dockerfile itself. It lives in ``<home>/build-<random>/context`` (home: ``<root>/builder``); the build's other
scratch files (ADD downloads) and the record of its intermediate containers
(``interrupted.py``) go next to it, and the whole directory is removed when the build ends.
Each build holds an exclusive ``flock`` on its ``.lock`` file while it runs; the directories
of builds a killed daemon left behind are swept when the daemon starts again
(``interrupted.sweep``).

A tar is unpacked with the image-import safety rules (nothing escapes, no device nodes), so
the context can be trusted to stay inside its directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from moorage.core.sdk.archive import extract_layer, open_decompressed
from moorage.core.sdk.errors import InvalidParameter, Unavailable
from moorage.core.sdk.store import ensure_dir
from moorage.core.services.download import download as fetch
from moorage.plugins.builder.interrupted import BUILD_PREFIX, LOCK, SETUP_PREFIX

GIT_TIMEOUT = 600


def is_git_url(remote: str) -> bool:
    """Docker 0.6.5 cloned ``git://`` and ``github.com/`` remotes; moorage also clones
    ``file://``, ``git@host:`` and http(s) URLs ending in ``.git`` (later Docker did too)."""
    if remote.startswith(("git://", "github.com/", "git@", "file://")):
        return True
    return remote.startswith(("http://", "https://")) and remote.split("#")[0].rstrip("/").endswith(".git")


def download(url: str, dest: Path) -> None:
    """Fetch ``url`` into the file ``dest`` (``core.download``); ``Unavailable`` when it cannot be had."""

    def save(stream: BinaryIO, size: int) -> None:
        with open(dest, "wb") as f:
            shutil.copyfileobj(stream, f, 1 << 20)

    fetch(url, save)


def git_clone(remote: str, dest: Path) -> None:
    url = "https://" + remote if remote.startswith("github.com/") else remote
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(["git", "clone", "--quiet", "--recursive", "--", url, str(dest)],
                              capture_output=True, text=True, env=env, timeout=GIT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise Unavailable(f"Error trying to use git: timed out cloning {remote}") from None
    if done.returncode != 0:
        raise Unavailable(f"Error trying to use git: {done.stderr.strip()} ({done.returncode})")


@contextlib.contextmanager
def build_context(home: Path, body: BinaryIO | None, remote: str = "") -> Iterator[Path]:
    """A context directory for the build, removed on exit.

    ``remote`` wins over the body. Raises ``InvalidParameter`` for a bad tar and
    ``Unavailable`` when a remote cannot be fetched.
    """
    directory = ensure_dir(home)
    # locked before it gets the name a sweep looks at
    fresh = Path(tempfile.mkdtemp(prefix=SETUP_PREFIX, dir=directory))
    lock = os.open(fresh / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    base = directory / (BUILD_PREFIX + fresh.name.removeprefix(SETUP_PREFIX))
    os.rename(fresh, base)
    context = base / "context"
    try:
        if remote and is_git_url(remote):
            git_clone(remote, context)
        elif remote:
            if not remote.startswith(("http://", "https://")):
                raise InvalidParameter(f"Bad parameter: remote={remote!r} is neither a git nor an http(s) URL")
            context.mkdir()
            download(remote, context / "Dockerfile")
        else:
            if body is None:
                raise InvalidParameter("Bad parameter: the build context is missing")
            context.mkdir()
            # the client's uids mean nothing here: everything the context adds belongs to root
            extract_layer(open_decompressed(body), context, allow_devices=False, same_owner=False)
        yield context
    finally:
        shutil.rmtree(base, ignore_errors=True)
        os.close(lock)
