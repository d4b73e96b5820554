"""Ids: 64 lower-case hex characters, a 12-character short form, and unique-prefix lookup."""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterable

from moorage.core.sdk.errors import InvalidParameter

ID_LENGTH = 64
SHORT_LENGTH = 12
_ID_RE = re.compile(r"^[0-9a-f]{64}$")


def new_id() -> str:
    """A fresh random id. Retries the (astronomically rare) all-digit id, as it reads as a number."""
    while True:
        value = secrets.token_hex(32)
        if not value.isdigit():
            return value


def short_id(value: str) -> str:
    return value[:SHORT_LENGTH]


def is_id(value: str) -> bool:
    return bool(_ID_RE.match(value))


def validate_id(value: str) -> str:
    if not is_id(value):
        raise InvalidParameter(f"Bad parameter: invalid id {value!r}: must be 64 lower-case hex characters")
    return value


class PrefixIndex:
    """A set of ids looked up by any unique prefix. Thread-safe.

    ``find`` returns None both for no match and for an ambiguous prefix (Docker 0.6 answered
    both with "No such ..."); ``is_ambiguous`` lets callers say which in their message.
    """

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._ids: set[str] = set(ids)
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        with self._lock:
            self._ids.add(value)

    def discard(self, value: str) -> None:
        with self._lock:
            self._ids.discard(value)

    def __contains__(self, value: str) -> bool:
        return value in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def matches(self, prefix: str) -> list[str]:
        if not prefix:
            return []
        with self._lock:
            if prefix in self._ids:
                return [prefix]
            return [i for i in self._ids if i.startswith(prefix)]

    def find(self, prefix: str) -> str | None:
        found = self.matches(prefix)
        return found[0] if len(found) == 1 else None

    def is_ambiguous(self, prefix: str) -> bool:
        return len(self.matches(prefix)) > 1
