"""The tag store: repository -> tag -> image id, kept in ``<root>/repositories-<driver>``.

The file holds ``{"Repositories": {"<repo>": {"<tag>": "<64hex>"}}}`` and is rewritten whole
and atomically (mode 0600) on every change, so a daemon killed mid-change leaves either the old
or the new mapping. A repository whose last tag goes away disappears. Every name stored is
checked against Docker 0.6.5's registry naming rules (``core/sdk/validation.py``), also those used
only locally (tag, import, commit, build), which 0.6.5 did not check.
"""

from __future__ import annotations

import threading
from pathlib import Path

from moorage.core.sdk.store import read_json, write_json
from moorage.core.sdk.validation import check_repository, check_tag

DEFAULT_TAG = "latest"


#: Prefixes that name Docker Hub's default namespace; today's docker CLI sends fully qualified
#: names (``docker.io/library/busybox``), stored here as the short form a 1.6 client uses.
HUB_PREFIXES = ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/")


def familiar_name(repo: str) -> str:
    for prefix in HUB_PREFIXES:
        if repo.startswith(prefix) and len(repo) > len(prefix):
            return repo[len(prefix):]
    return repo


def parse_repository_tag(name: str) -> tuple[str, str]:
    """Split ``repo[:tag]`` at the last ``:`` unless what follows it holds a ``/``.

    ``host:5000/repo`` therefore has no tag; the tag is ``""`` when absent (callers apply the
    ``latest`` default where Docker did).
    """
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:
        return familiar_name(name), ""
    return familiar_name(repo), tag


def validate_repo_name(name: str) -> str:
    """``name`` if it may be stored as a repository, else ``InvalidParameter``."""
    check_repository(name)
    return name


def validate_tag_name(tag: str) -> str:
    """``tag`` if it may be stored as a tag, else ``InvalidParameter``."""
    check_tag(tag)
    return tag


class TagStore:
    """Thread-safe; every mutation is one atomic rewrite of the file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        data = read_json(self.path, None) or {}
        repos = data.get("Repositories") or {}
        self._repos: dict[str, dict[str, str]] = {r: dict(t) for r, t in repos.items() if t}
        if data == {}:
            self._save()

    def _save(self) -> None:
        write_json(self.path, {"Repositories": self._repos}, mode=0o600)

    # -- reading ------------------------------------------------------------------------------
    def repositories(self) -> dict[str, dict[str, str]]:
        """A copy of the whole mapping."""
        with self._lock:
            return {r: dict(t) for r, t in self._repos.items()}

    def get(self, repo: str, tag: str) -> str | None:
        repo = familiar_name(repo)
        with self._lock:
            return self._repos.get(repo, {}).get(tag)

    def repository(self, repo: str) -> dict[str, str] | None:
        repo = familiar_name(repo)
        with self._lock:
            tags = self._repos.get(repo)
            return dict(tags) if tags is not None else None

    def by_id(self) -> dict[str, list[str]]:
        """``{image id: ["repo:tag", ...]}`` sorted, for every tagged image."""
        out: dict[str, list[str]] = {}
        with self._lock:
            for repo, tags in self._repos.items():
                for tag, image_id in tags.items():
                    out.setdefault(image_id, []).append(f"{repo}:{tag}")
        return {k: sorted(v) for k, v in out.items()}

    def tags_of(self, image_id: str) -> list[tuple[str, str]]:
        with self._lock:
            return sorted((r, t) for r, tags in self._repos.items() for t, i in tags.items() if i == image_id)

    # -- changing -----------------------------------------------------------------------------
    def set(self, repo: str, tag: str, image_id: str) -> None:
        """Point ``repo:tag`` at ``image_id``; an existing tag is overwritten (Docker 0.6 always forced)."""
        repo = familiar_name(validate_repo_name(repo))
        validate_tag_name(tag)
        with self._lock:
            self._repos.setdefault(repo, {})[tag] = image_id
            self._save()

    def delete(self, repo: str, tag: str) -> bool:
        """Remove ``repo:tag`` (the whole repository when ``tag`` is empty); whether anything went."""
        repo = familiar_name(repo)
        with self._lock:
            tags = self._repos.get(repo)
            if tags is None:
                return False
            if tag:
                if tag not in tags:
                    return False
                del tags[tag]
                if not tags:
                    del self._repos[repo]
            else:
                del self._repos[repo]
            self._save()
            return True

    def delete_all(self, image_id: str) -> None:
        """Drop every tag pointing at ``image_id``."""
        with self._lock:
            changed = False
            for repo in list(self._repos):
                tags = self._repos[repo]
                for tag in [t for t, i in tags.items() if i == image_id]:
                    del tags[tag]
                    changed = True
                if not tags:
                    del self._repos[repo]
            if changed:
                self._save()
