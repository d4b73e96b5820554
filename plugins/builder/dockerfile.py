"""Dockerfile parsing, with Docker 0.6.5's rules for what 0.6.5 read and today's classic
builder's for the rest (docs/build.md, "Parsing").

- Parser directives (``# escape=`` and, ignored, ``# syntax=`` and ``# check=``) are read
  from the comment lines at the top, before anything else.
- The escape character (``\\`` unless ``# escape=`````) at the end of a line continues it on
  the next; comment lines and empty lines inside a continued instruction are skipped.
- Tabs become spaces (as 0.6.5), every line is trimmed, empty lines and ``#`` comments are
  skipped, and a line is ``INSTRUCTION arguments``; ``--name=value`` words at the start of the
  arguments of FROM, ADD, COPY, RUN and HEALTHCHECK are its flags.

A line that cannot be an instruction becomes an ``Instruction`` with ``error`` set, which fails
the build when the build reaches it (as in 0.6.5); a bad directive fails the whole parse. Every
error names its line: ``Dockerfile parse error line N: ...``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from moorage.core.sdk.errors import InvalidParameter

_DIRECTIVE = re.compile(r"^#[ \t]*([a-zA-Z][a-zA-Z0-9]*)[ \t]*=[ \t]*(.+?)[ \t]*$")
KNOWN_DIRECTIVES = ("escape", "syntax", "check")
#: the flags each instruction takes (the classic builder's); RUN's are BuildKit's alone
FLAGS = {
    "from": ("platform",),
    "copy": ("from", "chown", "chmod", "link", "parents", "exclude"),
    "add": ("chown", "chmod", "checksum", "keep-git-dir", "link", "exclude"),
    "run": ("mount", "network", "security"),
    "healthcheck": ("interval", "timeout", "start-period", "start-interval", "retries"),
}


def line_error(line: int, message: str) -> str:
    return f"Dockerfile parse error line {line}: {message}"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``name`` lower-cased, ``args`` trimmed (flags taken off).
    ``error`` is set for a line that is not ``INSTR args``: it fails the build when the build
    reaches it, as in Docker 0.6.5. ``line`` is where it starts, ``escape`` the file's escape
    character, ``flags`` its ``--name=value`` flags in order."""

    name: str
    args: str
    error: str = ""
    flags: tuple[tuple[str, str], ...] = ()
    line: int = field(default=0, compare=False)
    escape: str = field(default="\\", compare=False)
    #: the arguments as written, flags included (the ``Step`` line shows them)
    original: str = field(default="", compare=False)

    def flag(self, name: str) -> str | None:
        """The value of flag ``name`` (the last one given), None when it is not given."""
        found = None
        for key, value in self.flags:
            if key == name:
                found = value
        return found


def _directives(lines: list[str]) -> tuple[str, int]:
    """The escape character and the number of lines the directives take."""
    escape, seen = "\\", set()
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line.strip(" \t\r"))
        if not match or match.group(1).lower() not in KNOWN_DIRECTIVES:
            return escape, index
        name, value = match.group(1).lower(), match.group(2)
        if name in seen:
            raise InvalidParameter(line_error(index + 1, f"only one {name} parser directive can be used"))
        seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise InvalidParameter(line_error(index + 1, f"invalid escape token '{value}' does not match ` or \\"))
            escape = value
    return escape, len(lines)


def _logical_lines(text: str) -> tuple[list[tuple[int, str]], str]:
    """``(first line number, joined text)`` of each instruction line, and the escape character."""
    lines = text.removeprefix("\ufeff").split("\n")
    escape, start = _directives(lines)
    continued = re.compile(re.escape(escape) + r"[ \t]*$")
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(lines[start:], start + 1):
        line = raw.rstrip("\r")
        stripped = line.strip(" \t")
        if pending is None:
            if not stripped or stripped.startswith("#"):
                continue
            begin, text_so_far = number, stripped
        else:
            if stripped.startswith("#") or not stripped:
                continue  # comments and empty lines inside a continuation are skipped
            begin, text_so_far = pending[0], pending[1] + line
        match = continued.search(text_so_far)
        if match:
            pending = (begin, text_so_far[:match.start()])
            continue
        pending = None
        out.append((begin, text_so_far))
    if pending is not None and pending[1].strip(" \t"):
        out.append(pending)
    return out, escape


def _split_flags(name: str, args: str, line: int) -> tuple[tuple[tuple[str, str], ...], str, str]:
    """The leading ``--flag[=value]`` words of ``args``; the flags, the rest, an error."""
    allowed = FLAGS.get(name)
    if allowed is None:
        return (), args, ""
    flags = []
    rest = args
    while rest.startswith("--"):
        word, _, after = rest.partition(" ")
        if word == "--":
            rest = after.lstrip(" ")
            break
        key, has_value, value = word[2:].partition("=")
        if key not in allowed:
            return (), args, line_error(line, f"Unknown flag: {key}")
        flags.append((key, value if has_value else "true"))
        rest = after.lstrip(" ")
    return tuple(flags), rest, ""


def parse(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile (see the module's rules). Raises ``InvalidParameter``
    (naming the line) for a bad parser directive; other bad lines come back as instructions
    with ``error`` set."""
    lines, escape = _logical_lines(text)
    out = []
    for number, joined in lines:
        line = joined.replace("\t", " ").strip(" \t\r\n")
        name, sep, args = line.partition(" ")
        args = args.strip(" ")
        if not sep or not args:
            out.append(Instruction("", "", line_error(number, "Invalid Dockerfile format"), line=number, escape=escape))
            continue
        name = name.strip().lower()
        flags, rest, error = _split_flags(name, args, number)
        out.append(Instruction(name, rest, error, flags, line=number, escape=escape, original=args))
    return out


def env_map(env: list[str] | None) -> dict[str, str]:
    found: dict[str, str] = {}
    for entry in env or []:
        key, _, value = entry.partition("=")
        found[key] = value
    return found


# $VAR or ${VAR}; a backslash before the $ keeps it literal
_VARIABLE = re.compile(r"(\\*)\$(\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))")


def substitute(value: str, env: list[str] | None) -> str:
    """Docker 0.6.5's substitution (the legacy ``ENV key value`` form): replace ``$VAR`` and
    ``${VAR}`` with the build env's values; unknown variables and escaped dollars (``\\$VAR``)
    stay as written."""
    known = env_map(env)

    def replace(match: re.Match) -> str:
        slashes, name = match.group(1), match.group(3) or match.group(4)
        if len(slashes) % 2 or name not in known:
            return match.group(0)
        return slashes + known[name]

    return _VARIABLE.sub(replace, value)


def string_array(args: str) -> list[str] | None:
    """``args`` as a JSON array of strings, or None if it is not one."""
    if not args.startswith("["):
        return None
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
    """A JSON array of strings, else the whole text as one item."""
    value = string_array(args)
    if value is not None:
        return value
    if not args:
        raise InvalidParameter("Volume cannot be empty")
    return [args]


def json_or_words(args: str) -> list[str]:
    """VOLUME's, ADD's and COPY's arguments: a JSON array of strings, else the words."""
    value = string_array(args)
    return value if value is not None else args.split()


def quoted_words(args: str, escape: str) -> list[str]:
    """``args`` split on whitespace outside quotes, quotes and escapes kept in the words."""
    words, current, quote, i = [], "", "", 0
    while i < len(args):
        ch = args[i]
        if ch == escape and i + 1 < len(args) and quote != "'":
            current += args[i:i + 2]
            i += 2
            continue
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if current:
                words.append(current)
            current = ""
            i += 1
            continue
        current += ch
        i += 1
    if current:
        words.append(current)
    return words


def name_values(args: str, what: str, escape: str = "\\") -> list[str] | None:
    """The ``name=value`` words of ENV or LABEL (quotes kept, for expansion to remove), or
    None for the legacy ``ENV name value`` form (its first word has no ``=``)."""
    words = quoted_words(args, escape)
    if not words or "=" not in words[0]:
        return None
    for word in words:
        if "=" not in word:
            raise InvalidParameter(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        if word.startswith("="):
            raise InvalidParameter(f"{what} names can not be blank")
    return words
