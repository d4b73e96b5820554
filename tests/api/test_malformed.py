"""The malformed requests the API fuzzer (bench/fuzz_api.py) found answered with a 500 or a
traceback: each is now a plain 4xx, and the daemon logs no traceback."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    from conftest import Daemon

    with Daemon(tmp_path_factory.mktemp("malformed")).start() as d, d.client() as client:
        client.daemon = d
        yield client


@pytest.mark.parametrize("address", ["\U0010a10bâ1Ô|[x", "[None", "ÒVª¬*[", "http://×/", "http://[::1"])
def test_login_with_an_unparsable_serveraddress_is_a_400(api, address):
    answer = api.post("/auth", json={"username": "u", "password": "p", "serveraddress": address})
    assert answer.status_code == 400 and "serveraddress" in answer.text, answer.text


def test_import_from_an_unencodable_url_ends_its_stream_with_a_plain_error(api):
    answer = api.post("/images/create", params={"fromSrc": "http://×/"})
    # the stream has started (Docker's framing): the error is its last object, not a crash
    assert answer.status_code == 200 and '"error":"Bad parameter: cannot download' in answer.text, answer.text


@pytest.mark.parametrize(("method", "path", "params", "status"), [
    ("GET", "/images/nothing/history", None, 404),
    ("POST", "/images/nothing/tag", {"repo": "x"}, 404),
    ("POST", "/images/create", None, 400),
    ("POST", "/images/create", {"fromSrc": "-", "repo": "x", "tag": "a:b"}, 400),
])
def test_docker_0_6_500s_for_bad_requests_are_4xx(api, method, path, params, status):
    assert api.request(method, path, params=params).status_code == status


def test_no_traceback_in_the_log(api):
    api.post("/auth", json={"serveraddress": "[None"})
    api.post("/images/create", params={"fromSrc": "http://×/"})
    assert "Traceback" not in api.daemon.log()
