"""Dockerfile parsing and ``$VAR`` substitution, with Docker 0.6.5's rules (reference §6.1)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from moorage.core.sdk.errors import InvalidParameter

_CONTINUATION = re.compile(r"\\[ \t]*\r?\n")
# $VAR or ${VAR}; a backslash before the $ keeps it literal
_VARIABLE = re.compile(r"(\\*)\$(\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile line: ``name`` lower-cased, ``args`` trimmed. ``error`` is set for a line
    that is not ``INSTR args``: it fails the build when the build reaches it, as in Docker."""

    name: str
    args: str
    error: str = ""


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile: backslash-newline joins lines, tabs become spaces,
    empty lines and ``#`` comments are skipped."""
    out = []
    for raw in _CONTINUATION.sub("", text).split("\n"):
        line = raw.replace("\t", " ").strip(" \t\r\n")
        if not line or line.startswith("#"):
            continue
        name, sep, args = line.partition(" ")
        if not sep:
            out.append(Instruction("", "", error="Invalid Dockerfile format"))
            continue
        out.append(Instruction(name.strip().lower(), args.strip(" ")))
    return out


def env_map(env: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in env or []:
        key, _, value = entry.partition("=")
        found[key] = value
    return found


def substitute(value: str, env: list[str] | None) -> str:
    """Replace ``$VAR`` and ``${VAR}`` with the build env's values; unknown variables and
    escaped dollars (``\\$VAR``) stay as written."""
    known = env_map(env)

    def replace(match: re.Match) -> str:
        slashes, name = match.group(1), match.group(3) or match.group(4)
        if len(slashes) % 2 or name not in known:
            return match.group(0)
        return slashes + known[name]

    return _VARIABLE.sub(replace, value)


def string_array(args: str) -> list[str] | None:
    """``args`` as a JSON array of strings, or None if it is not one."""
    try:
        value = json.loads(args)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def json_or_shell(args: str) -> list[str]:
    """A JSON array of strings as it is, anything else as ``["/bin/sh", "-c", args]``."""
    value = string_array(args)
    return value if value is not None else ["/bin/sh", "-c", args]


def json_or_single(args: str) -> list[str]:
    """VOLUME's argument: a JSON array of strings, else the whole text as one path."""
    value = string_array(args)
    if value is not None:
        return value
    if not args:
        raise InvalidParameter("Volume cannot be empty")
    return [args]
