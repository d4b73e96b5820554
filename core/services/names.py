"""The name registry: container names and link paths, as Docker 0.6's ``linkgraph.db``.

Names are paths: a container's own name is ``/name``; a link adds ``/parent/alias`` pointing at
the child. Kept in SQLite (``<root>/linkgraph.db``), whose transactions make every change atomic
and durable. Generated names are ``<colour>_<animal>`` as in 0.6.5, with a digit appended on a
collision.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
from pathlib import Path

from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.sdk.validation import check_container_name, check_link_alias

_COLOURS = (
    "amber", "azure", "black", "blue", "brown", "coral", "crimson", "cyan",
    "gold", "green", "grey", "indigo", "orange", "pink", "red", "violet",
)
_ANIMALS = (
    "albatross", "badger", "beaver", "cormorant", "dolphin", "eel", "gannet", "heron",
    "kingfisher", "lobster", "otter", "pelican", "puffin", "seal", "tern", "walrus",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS edge (
    parent TEXT NOT NULL,   -- '/' for top-level names, else the parent's own path
    name   TEXT NOT NULL,
    target TEXT NOT NULL,   -- container id
    PRIMARY KEY (parent, name)
);
CREATE INDEX IF NOT EXISTS edge_target ON edge(target);
"""


def normalize(name: str) -> str:
    """``foo`` and ``/foo`` name the same container; an empty name is refused."""
    name = name.strip()
    if not name or name == "/":
        raise InvalidParameter("Bad parameter: a name cannot be empty")
    return name if name.startswith("/") else "/" + name


def _split(path: str) -> tuple[str, str]:
    parent, _, name = path.rstrip("/").rpartition("/")
    return (parent or "/"), name


class NameRegistry:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL with NORMAL survives any process crash; only a power loss may undo the last change,
        # which _load repairs (a container without a name gets a generated one)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def _transaction(self):
        """One atomic change (the connection autocommits each statement otherwise)."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A query's rows. Reads take the lock too: threads share the one connection, and a
        statement run beside another thread's reports that thread's error (a create answered
        500 "UNIQUE constraint failed" under 100 clients, bench/load.py)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _add(self, path: str, target: str) -> None:
        parent, name = _split(path)
        try:
            with self._lock, self._transaction():
                self._db.execute("INSERT INTO edge VALUES (?, ?, ?)", (parent, name, target))
        except sqlite3.IntegrityError:
            raise Conflict(f"Conflict, {path} already exists.") from None

    def reserve(self, name: str, target: str) -> str:
        """Register the top-level ``name`` for ``target``; Conflict if it is taken, and
        ``InvalidParameter`` if it breaks the container name rule (``core/sdk/validation.py``)."""
        check_container_name(name)
        path = normalize(name)
        self._add(path, target)
        return path

    def generate(self, target: str) -> str:
        """Reserve a fresh ``<colour>_<animal>`` name; after 5 collisions, the short id."""
        base = f"{random.choice(_COLOURS)}_{random.choice(_ANIMALS)}"
        candidates = [base] + [f"{base}{random.randint(0, 9)}" for _ in range(5)] + [target[:12]]
        for candidate in candidates:
            try:
                return self.reserve(candidate, target)
            except Conflict:
                continue
        raise Conflict(f"Conflict, could not generate a name for {target[:12]}")

    def resolve(self, name: str) -> str | None:
        """The container id a name or link path points at, or None."""
        try:
            parent, leaf = _split(normalize(name))
        except InvalidParameter:
            return None
        rows = self._rows("SELECT target FROM edge WHERE parent=? AND name=?", (parent, leaf))
        return rows[0][0] if rows else None

    def names_of(self, target: str) -> list[str]:
        """Every path pointing at ``target``: its own name first, then link paths."""
        rows = self._rows("SELECT parent, name FROM edge WHERE target=?", (target,))
        paths = [("" if p == "/" else p) + "/" + n for p, n in rows]
        return sorted(paths, key=lambda p: (p.count("/"), p))

    def name_of(self, target: str) -> str | None:
        names = [n for n in self.names_of(target) if n.count("/") == 1]
        return names[0] if names else None

    def link(self, parent_name: str, alias: str, child: str) -> str:
        check_link_alias(alias)
        path = normalize(parent_name).rstrip("/") + "/" + alias
        if self.resolve(path) == child:
            return path
        self._add(path, child)
        return path

    def children(self, parent_name: str) -> dict[str, str]:
        """``{"/parent/alias": child_id}`` for the links under a container's name."""
        parent = normalize(parent_name)
        rows = self._rows("SELECT name, target FROM edge WHERE parent=?", (parent,))
        return {f"{parent}/{n}": t for n, t in rows}

    def unlink(self, path: str) -> None:
        """Remove a link path; a top-level name cannot be removed this way."""
        path = normalize(path)
        parent, leaf = _split(path)
        if parent == "/":
            raise Conflict("Conflict, cannot remove the default name of the container")
        with self._lock, self._transaction():
            cur = self._db.execute("DELETE FROM edge WHERE parent=? AND name=?", (parent, leaf))
        if cur.rowcount == 0:
            raise NotFound(f"No such link: {path}")

    def purge(self, target: str) -> None:
        """Remove every path to ``target`` and every link under its names."""
        own = [n for n in self.names_of(target) if n.count("/") == 1]
        with self._lock, self._transaction():
            self._db.execute("DELETE FROM edge WHERE target=?", (target,))
            for name in own:
                self._db.execute("DELETE FROM edge WHERE parent=?", (name,))

    def rename(self, target: str, new_name: str) -> str:
        """Move ``target``'s top-level name to ``new_name`` and the links under it along; returns
        the new path. Conflict if the name is taken."""
        path = normalize(new_name)
        if path.count("/") != 1:
            raise InvalidParameter(f"Bad parameter: invalid container name {new_name!r}: '/' is not allowed")
        old = self.name_of(target)
        if old is None:
            raise NotFound(f"No such container: {target}")
        if old == path:
            return path
        try:
            with self._lock, self._transaction():
                self._db.execute("UPDATE edge SET name=? WHERE parent='/' AND name=? AND target=?",
                                 (path[1:], old[1:], target))
                self._db.execute("UPDATE edge SET parent=? WHERE parent=?", (path, old))
        except sqlite3.IntegrityError:
            raise Conflict(f"Conflict, {path} already exists.") from None
        return path

    def all_names(self) -> dict[str, str]:
        rows = self._rows("SELECT parent, name, target FROM edge")
        return {("" if p == "/" else p) + "/" + n: t for p, n, t in rows}
