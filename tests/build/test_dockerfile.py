"""Unit tests of the builder's pure parts: Dockerfile parsing, substitution, the cache rule."""

from __future__ import annotations

import os

import pytest

from moorage.core.sdk.errors import InvalidParameter, NotFound
from moorage.core.services.container_config import CONFIG_FIELDS
from moorage.plugins.builder.add import context_source, is_archive, url_file_name
from moorage.plugins.builder.cache import content_hash, same_config
from moorage.plugins.builder.dockerfile import Instruction, json_or_shell, json_or_single, parse, substitute


def test_parse_joins_continuations_skips_comments_and_lowercases():
    text = "# comment\n\n\tfrom  busybox \nRUN echo a \\\n  b\nrun\tls\nONLYWORD\n  # indented comment\n"
    assert parse(text) == [
        Instruction("from", "busybox"),
        Instruction("run", "echo a   b"),
        Instruction("run", "ls"),
        Instruction("", "", error="Dockerfile parse error line 7: Invalid Dockerfile format"),
    ]


@pytest.mark.parametrize(("value", "expected"), [
    ("$A", "1"), ("${A}", "1"), ("x$A-y", "x1-y"), ("${A}${B}", "12"), ("$MISSING", "$MISSING"),
    ("\\$A", "\\$A"), ("\\\\$A", "\\\\1"), ("$", "$"), ("$A_B", "$A_B"),
])
def test_substitute(value, expected):
    assert substitute(value, ["A=1", "B=2", "EMPTY="]) == expected


def test_json_or_shell_and_single():
    assert json_or_shell('["a", "b"]') == ["a", "b"]
    assert json_or_shell("echo hi") == ["/bin/sh", "-c", "echo hi"]
    assert json_or_shell('{"a": 1}') == ["/bin/sh", "-c", '{"a": 1}']
    assert json_or_single('["/a", "/b"]') == ["/a", "/b"]
    assert json_or_single("/data") == ["/data"]
    with pytest.raises(InvalidParameter, match="Volume cannot be empty"):
        json_or_single("")


def config(**values):
    return {**CONFIG_FIELDS, **values}


def test_same_config_follows_dockers_rule():
    base = config(Cmd=["/bin/sh", "-c", "x"], Env=["A=1"], ExposedPorts={"80/tcp": {}})
    assert same_config(base, config(Cmd=["/bin/sh", "-c", "x"], Env=["A=1"], ExposedPorts={"80/tcp": {}},
                                    Hostname="other", Image="other"))
    assert not same_config(base, config(Cmd=["/bin/sh", "-c", "y"], Env=["A=1"], ExposedPorts={"80/tcp": {}}))
    assert not same_config(base, {**base, "User": "daemon"})
    assert not same_config(base, {**base, "ExposedPorts": {"81/tcp": {}}})
    assert not same_config(base, {**base, "OpenStdin": True})
    assert same_config(config(Dns=None), config(Dns=[]))  # null and empty lists are equal in Go


def test_content_hash_sees_content_modes_and_names_but_not_times(tmp_path):
    (tmp_path / "d").mkdir()
    f = tmp_path / "d" / "f"
    f.write_text("one")
    first = content_hash(tmp_path / "d")
    os.utime(f, (1, 1))
    assert content_hash(tmp_path / "d") == first
    f.chmod(0o600)
    changed_mode = content_hash(tmp_path / "d")
    assert changed_mode != first
    f.write_text("two")
    assert content_hash(tmp_path / "d") != changed_mode
    assert content_hash(tmp_path / "d", "url") != content_hash(tmp_path / "d", "context")


def test_context_source_stays_in_the_context(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text("mine")
    (tmp_path / "abs").symlink_to("/etc/passwd")
    assert context_source(tmp_path, "abs").read_text() == "mine"
    assert context_source(tmp_path, "/etc/../etc/passwd").read_text() == "mine"
    with pytest.raises(InvalidParameter, match="Forbidden path"):
        context_source(tmp_path, "etc/../../x")
    with pytest.raises(NotFound, match="nope: no such file or directory"):
        context_source(tmp_path, "nope")


def test_is_archive_and_url_names(tmp_path):
    small = tmp_path / "small"
    small.write_bytes(b"123")
    text = tmp_path / "text"
    text.write_text("not an archive at all, just text" * 20)
    assert not is_archive(small) and not is_archive(text)
    assert url_file_name("http://h/a/b.tar.gz?x=1") == "b.tar.gz"
    with pytest.raises(InvalidParameter, match="cannot determine filename from url"):
        url_file_name("http://h/")
