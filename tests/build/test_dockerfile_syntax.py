"""Unit tests of today's Dockerfile syntax: the parser, word processing and ``.dockerignore``."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moorage.core.sdk.errors import InvalidParameter
from moorage.plugins.builder.dockerfile import Instruction, name_values, parse
from moorage.plugins.builder.dockerignore import apply, excluded, parse_patterns
from moorage.plugins.builder.shell_words import WordError, process_word, process_words

ENV = {"A": "1", "EMPTY": "", "SPACE": "a b"}


@pytest.mark.parametrize(("word", "expected"), [
    ("$A", "1"), ("${A}", "1"), ("x${A}y", "x1y"), ("$MISSING", ""), ("${MISSING:-d}", "d"),
    ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""), ("${A:+set}", "set"), ("${MISSING:+set}", ""), ("${A+x}", "x"),
    ("'$A'", "$A"), ('"$A b"', "1 b"), ('"\\$A"', "$A"), ("\\$A", "$A"), ('"a\\b"', "a\\b"), ("$", "$"),
    ("${MISSING:-$A}", "1"), ("a\\ b", "a b"),
])
def test_process_word(word, expected):
    assert process_word(word, ENV) == expected


def test_process_words_split_on_unquoted_space_only():
    assert process_words('a "b c" $SPACE', ENV) == ["a", "b c", "a", "b"]
    assert process_word("`$A", ENV, escape="`") == "$A"


@pytest.mark.parametrize("word", ["'open", '"open', "${A", "${A!x}", "${}", "${MISSING:?gone}"])
def test_process_word_errors(word):
    with pytest.raises(WordError):
        process_word(word, ENV)


def test_parse_directives_flags_continuations_and_lines():
    text = ("# escape=`\n# syntax=docker/dockerfile:1\n\nFROM busybox AS base\n"
            "RUN echo a `\n# a comment inside\n\n  b\nCOPY --from=base --chown=1:2 /a /b\n"
            "ADD --bogus=1 a b\n")
    parsed = parse(text)
    assert parsed[0] == Instruction("from", "busybox AS base") and parsed[0].line == 4
    assert parsed[1] == Instruction("run", "echo a   b") and parsed[1].line == 5
    assert parsed[2] == Instruction("copy", "/a /b", flags=(("from", "base"), ("chown", "1:2")))
    assert parsed[2].flag("chown") == "1:2" and parsed[2].flag("chmod") is None and parsed[2].line == 9
    assert parsed[3].error == "Dockerfile parse error line 10: Unknown flag: bogus"
    assert all(i.escape == "`" for i in parsed)


@pytest.mark.parametrize(("text", "message"), [
    ("# escape=x\nFROM busybox\n", "line 1: invalid escape token"),
    ("# escape=\\\n# escape=`\nFROM busybox\n", "line 2: only one escape parser directive"),
])
def test_bad_directives_name_their_line(text, message):
    with pytest.raises(InvalidParameter, match=message):
        parse(text)


def test_a_directive_after_an_instruction_is_a_comment():
    parsed = parse("FROM busybox\n# escape=`\nRUN a \\\n b\n")
    assert parsed[1] == Instruction("run", "a  b")


def test_name_values():
    assert name_values('B=1 C="v 2" D=a\\ b', "ENV") == ["B=1", 'C="v 2"', "D=a\\ b"]
    assert name_values("B 1", "ENV") is None
    with pytest.raises(InvalidParameter, match="can't find ="):
        name_values("B=1 C", "ENV")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("FROMRUNENVCOPYARGfrom \t\n\\`#=\"'$-{}[]:abc19")), max_size=200))
def test_parse_never_crashes_and_errors_name_a_line(text):
    try:
        parsed = parse(text)
    except InvalidParameter as exc:
        assert str(exc).startswith("Dockerfile parse error line ")
        return
    for instruction in parsed:
        assert instruction.line >= 1
        assert not instruction.error or instruction.error.startswith(f"Dockerfile parse error line {instruction.line}:")
        assert instruction.error or (instruction.name and instruction.args)
        try:
            process_words(instruction.args, ENV, instruction.escape)
        except WordError:
            pass  # the builder turns it into a line-numbered error


@pytest.mark.parametrize(("path", "expected"), [
    ("secret.txt", True), ("logs", True), ("logs/a.log", True), ("logs/keep.log", False), ("a/b/c.tmp", True),
    ("c.tmp", True), ("src/main.py", False), ("docs/x.md", True), ("docs/README.md", False), ("Dockerfile", False),
])
def test_dockerignore_patterns(path, expected):
    patterns = parse_patterns("# comment\n/secret.txt\nlogs\n!logs/keep.log\n**/*.tmp\ndocs/*.md\n!docs/README*\n")
    assert excluded(patterns, path) is expected


def test_dockerignore_apply_removes_without_following_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    context = tmp_path / "context"
    (context / "logs").mkdir(parents=True)
    (context / "logs" / "a.log").write_text("x")
    (context / "logs" / "keep.log").write_text("x")
    (context / "link").symlink_to(outside)
    (context / "Dockerfile").write_text("FROM busybox\n")
    (context / ".dockerignore").write_text("logs\n!logs/keep.log\nlink\nDockerfile\n")
    apply(context)
    assert sorted(p.name for p in context.rglob("*")) == [".dockerignore", "keep.log", "logs"]
    assert (outside / "precious").read_text() == "keep"
