"""Today's Dockerfile word processing (the classic builder's ``shell.Lex``): quotes, escapes
and ``$VAR`` expansion in the arguments of ADD, ARG, COPY, ENV, EXPOSE, FROM, USER, VOLUME and
WORKDIR.

- ``'...'`` is literal; ``"..."`` expands variables, and the escape character in it only
  escapes ``"``, ``$`` and itself; outside quotes the escape character makes the next
  character literal.
- ``$NAME``, ``${NAME}``; ``${NAME:-word}`` (word when unset or empty), ``${NAME-word}`` (when
  unset), ``${NAME:+word}`` (word when set and not empty), ``${NAME+word}`` (when set),
  ``${NAME:?message}`` and ``${NAME?message}`` (an error when unset). An unknown variable is
  empty. A ``$`` not followed by a name stays as it is.

Errors are ``WordError`` (an ``InvalidParameter``) with the reason; the builder adds the line.
"""

from __future__ import annotations

from collections.abc import Mapping

from moorage.core.sdk.errors import InvalidParameter


class WordError(InvalidParameter):
    """A word that cannot be processed (an unmatched quote, a bad substitution)."""


def _is_name_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        self.pos += 1 if ch else 0
        return ch

    def words(self, split: bool) -> list[str]:
        """The text as words (split on unquoted whitespace when ``split``, else one word)."""
        words: list[str] = []
        current: list[str] = []
        started = False
        while self.peek():
            ch = self.next()
            if split and ch in " \t\r\n":
                if started:
                    words.append("".join(current))
                    current, started = [], False
                continue
            started = True
            if ch == "$" and split:  # an unquoted expansion is split into words too
                pieces = self.dollar().split()
                if not pieces:
                    continue
                current.append(pieces[0])
                for piece in pieces[1:]:
                    words.append("".join(current))
                    current = [piece]
            else:
                current.append(self.unquoted(ch))
        if started or not split:
            words.append("".join(current))
        return words

    def single_quoted(self) -> str:
        end = self.text.find("'", self.pos)
        if end < 0:
            raise WordError("unexpected end of statement while looking for matching single-quote")
        value, self.pos = self.text[self.pos:end], end + 1
        return value

    def double_quoted(self) -> str:
        out = []
        while True:
            ch = self.next()
            if not ch:
                raise WordError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
            elif ch == self.escape and self.peek() in ('"', "$", self.escape) and self.peek():
                out.append(self.next())
            else:
                out.append(ch)

    def dollar(self) -> str:
        if self.peek() != "{":
            name = self.name()
            return self.env.get(name, "") if name else "$"
        self.next()
        name = self.name()
        if not name:
            raise WordError("bad substitution: a variable name is missing after '${'")
        ch = self.next()
        if ch == "}":
            return self.env.get(name, "")
        colon = ch == ":"
        if colon:
            ch = self.next()
        if ch not in ("-", "+", "?"):
            raise WordError(f"unsupported modifier ({ch or 'end of text'}) in substitution")
        word = self.until_brace()
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if ch == "-":
            return value if is_set else word
        if ch == "+":
            return word if is_set else ""
        if not is_set:
            raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
        return value

    def until_brace(self) -> str:
        """The word of a ``${NAME:-word}`` modifier, itself expanded, up to the closing brace."""
        out = []
        while True:
            ch = self.next()
            if not ch:
                raise WordError("missing '}' in a variable substitution")
            if ch == "}":
                return "".join(out)
            out.append(self.unquoted(ch))

    def unquoted(self, ch: str) -> str:
        """What ``ch`` (just read, outside quotes) and what it starts stand for."""
        if ch == self.escape:
            return self.next()
        if ch == "'":
            return self.single_quoted()
        if ch == '"':
            return self.double_quoted()
        if ch == "$":
            return self.dollar()
        return ch

    def name(self) -> str:
        start = self.pos
        while self.peek() and _is_name_char(self.peek()):
            self.pos += 1
        return self.text[start:self.pos]


def process_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``text`` as one word: quotes removed, escapes applied, variables expanded."""
    return _Lexer(text, env, escape).words(split=False)[0]


def process_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """``text`` split on unquoted whitespace, each word processed as ``process_word`` does."""
    return _Lexer(text, env, escape).words(split=True)
