"""Search and paginated lists: the registry's v1 search API where it has one (the Hub),
else its catalog filtered by the term; every list bounded."""

from __future__ import annotations

from urllib.parse import quote

from moorage.core.sdk.errors import MoorageError, Unavailable
from moorage.drivers.registry.v2.reference import DOCKER_HUB_INDEX
from moorage.drivers.registry.v2.transport import Session, TooLarge

#: The most tags of one repository, and repositories of a catalog or search, read; and the
#: most pages a registry may split them into.
MAX_LIST_ITEMS = 10_000
MAX_LIST_PAGES = 100


def search(session: Session, query: str) -> list[dict]:
    """Repositories of the session's registry matching ``query``."""
    results = _search_v1(session, query)
    return _search_catalog(session, query) if results is None else results


def _search_v1(session: Session, query: str) -> list[dict] | None:
    base = DOCKER_HUB_INDEX if session.registry.is_hub else session.registry.url
    try:
        response = session.request("GET", f"{base}/v1/search?q={quote(query)}")
    except TooLarge:
        raise
    except MoorageError:
        return None
    if response.status_code != 200:
        return None
    try:
        found = response.json().get("results")
    except (ValueError, AttributeError):
        return None
    if not isinstance(found, list):
        return None
    if len(found) > MAX_LIST_ITEMS:
        raise TooLarge(f"{session.registry.host} answered more than {MAX_LIST_ITEMS} search results")
    return [_result(r.get("name", ""), r.get("description") or "", int(r.get("star_count") or 0),
                    bool(r.get("is_official")), bool(r.get("is_trusted") or r.get("is_automated")))
            for r in found]

def _search_catalog(session: Session, query: str) -> list[dict]:
    names = paged(session, "/v2/_catalog?n=1000", "repositories", "repository catalog")
    needle = query.lower()
    return [_result(n, "", 0, False, False) for n in sorted(names) if needle in n.lower()]


def _result(name: str, description: str, stars: int, official: bool, trusted: bool) -> dict:
    return {"name": name, "description": description, "star_count": stars, "is_official": official,
            "is_trusted": trusted}


def paged(session: Session, path: str, key: str, what: str) -> list[str]:
    """The strings under ``key`` of every page of a paginated list (``Link: <...>; rel="next"``),
    bounded: each page by the session's answer bound, the whole by ``MAX_LIST_ITEMS`` items and
    ``MAX_LIST_PAGES`` pages."""
    items: list[str] = []
    pages = 0
    while path:
        pages += 1
        if pages > MAX_LIST_PAGES:
            raise TooLarge(f"{what} at {session.registry.host} has more than {MAX_LIST_PAGES} pages")
        response = session.request("GET", path)
        session.check(response, what)
        try:
            page = response.json().get(key) or []
        except (ValueError, AttributeError):
            raise Unavailable(f"{what} at {session.registry.host} is not a JSON object") from None
        if not isinstance(page, list) or not all(isinstance(item, str) for item in page):
            raise Unavailable(f"{what} at {session.registry.host}: {key} is not a list of strings")
        items += page
        if len(items) > MAX_LIST_ITEMS:
            raise TooLarge(f"{what} at {session.registry.host} has more than {MAX_LIST_ITEMS} entries")
        path = _next_link(response)
    return items


def _next_link(response) -> str | None:
    link = response.headers.get("link", "")
    if 'rel="next"' not in link:
        return None
    return link.split(";")[0].strip().strip("<>") or None
