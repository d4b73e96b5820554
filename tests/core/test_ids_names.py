import re
import uuid

import pytest

from moorage.core.sdk.errors import Conflict, InvalidParameter, NotFound
from moorage.core.sdk.ids import PrefixIndex, is_id, new_id, short_id, validate_id
from moorage.core.services.names import NameRegistry, normalize


def test_new_ids_are_64_hex_and_unique():
    ids = {new_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids)
    assert all(is_id(i) for i in ids)
    assert short_id("a" * 64) == "a" * 12


def test_validate_id_refuses_bad_ids():
    with pytest.raises(InvalidParameter):
        validate_id("abc:def")
    assert validate_id("0" * 63 + "a") == "0" * 63 + "a"


def test_prefix_index_unique_and_ambiguous():
    index = PrefixIndex(["abc123" + "0" * 58, "abd456" + "0" * 58])
    assert index.find("abc") == "abc123" + "0" * 58
    assert index.find("ab") is None and index.is_ambiguous("ab")
    assert index.find("zz") is None and not index.is_ambiguous("zz")
    assert index.find("") is None
    index.discard("abd456" + "0" * 58)
    assert index.find("ab") == "abc123" + "0" * 58


@pytest.fixture
def names(tmp_path):
    registry = NameRegistry(tmp_path / "linkgraph.db")
    yield registry
    registry.close()


def test_names_reserve_resolve_conflict(names):
    assert names.reserve("web", "1" * 64) == "/web"
    assert names.resolve("web") == names.resolve("/web") == "1" * 64
    with pytest.raises(Conflict, match="Conflict, /web already exists."):
        names.reserve("/web", "2" * 64)
    with pytest.raises(InvalidParameter):
        normalize("")


def test_links_children_unlink_and_purge(names, tmp_path):
    names.reserve("web", "w" * 64)
    names.reserve("db", "d" * 64)
    assert names.link("/web", "db", "d" * 64) == "/web/db"
    assert names.resolve("/web/db") == "d" * 64
    assert names.names_of("d" * 64) == ["/db", "/web/db"]
    assert names.children("/web") == {"/web/db": "d" * 64}
    with pytest.raises(Conflict, match="cannot remove the default name"):
        names.unlink("/web")
    with pytest.raises(NotFound, match="No such link: /web/nope"):
        names.unlink("/web/nope")
    names.unlink("/web/db")
    assert names.children("/web") == {}
    names.link("/web", "db", "d" * 64)
    names.purge("w" * 64)  # the parent goes: its links go too
    assert names.resolve("/web") is None and names.resolve("/web/db") is None
    assert names.names_of("d" * 64) == ["/db"]
    # durable: a new registry on the same file sees the same names
    again = NameRegistry(tmp_path / "linkgraph.db")
    assert again.resolve("/db") == "d" * 64
    again.close()


def test_generated_names_are_unique(names):
    made = {names.generate(f"{i:064x}") for i in range(60)}
    assert len(made) == 60
    assert all(re.fullmatch(r"/[a-z]+_[a-z]+\d?|/[0-9a-f]{12}", n) for n in made)


def test_names_are_read_and_written_from_many_threads_without_database_errors(tmp_path):
    """The API serves requests on many threads over one connection: a read beside another
    thread's insert got that insert's error (a create answered 500 "UNIQUE constraint
    failed" under bench/load.py's 100 clients)."""
    import threading

    registry = NameRegistry(tmp_path / "names.db")
    errors: list[str] = []

    def create() -> None:
        for _ in range(200):
            try:
                registry.generate(uuid.uuid4().hex * 2)
            except Exception as exc:  # noqa: BLE001  (every failure is what the test counts)
                errors.append(repr(exc))

    def read() -> None:
        for _ in range(2000):
            try:
                registry.all_names()
                registry.resolve("/nobody")
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    threads = [threading.Thread(target=create) for _ in range(4)] + [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    registry.close()
    assert errors == []
    assert len(NameRegistry(tmp_path / "names.db").all_names()) == 800
