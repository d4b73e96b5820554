"""One registry conversation: an httpx client with retries and the registry's auth dance.

Auth follows the registry's ``WWW-Authenticate`` challenges: ``Basic`` sends the credentials,
``Bearer realm=,service=,scope=`` fetches a token from the realm for every scope seen so far in
this session, so a token is fetched again when the scope grows (a pull token is not enough for
the upload that follows it). Credentials live only in this object's memory.
"""

from __future__ import annotations

import base64
import http.client
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx

from moorage.core import __version__
from moorage.core.errors import Forbidden, NotFound, Unauthorized, Unavailable
from moorage.core.hookspecs.registry import AuthConfig

from .reference import Registry

log = logging.getLogger(__name__)
T = TypeVar("T")

USER_AGENT = f"moorage/{__version__} (docker-api/1.6)"
WRONG_LOGIN = "Wrong login/password, please try again"
_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')


class Transient(Exception):
    """A 5xx or 429 answer: worth another try."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"{response.request.method} {response.request.url.path}: HTTP {response.status_code}")
        self.status = response.status_code


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="r",service="s"`` -> ("bearer", {"realm": "r", "service": "s"})."""
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), {k.lower(): v for k, v in _PARAM.findall(rest)}


def registry_error(response: httpx.Response) -> str:
    """The first error message of a registry's JSON error body, or the status line."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return f"{first.get('code', '')}: {first.get('message', '')}".strip(": ")
    except Exception:
        return f"HTTP {response.status_code}"


class Session:
    """Requests to one registry with one set of credentials, for one pull, push, login or search."""

    def __init__(self, registry: Registry, auth: AuthConfig, retries: int = 4, backoff: float = 0.25,
                 timeout: float = 60.0) -> None:
        self.registry = registry
        self._auth = auth
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                                   follow_redirects=True, headers={"User-Agent": USER_AGENT})
        #: resource ("repository:library/busybox") -> actions granted or wanted
        self._scopes: dict[str, set[str]] = {}
        self._token_scopes: dict[str, set[str]] | None = None
        self._authorization: str | None = None
        # download threads share the session: one of them answers a challenge at a time
        self._auth_lock = threading.Lock()
        #: how many tokens this session fetched (tests and debugging)
        self.tokens_fetched = 0

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.registry.url}{path}"

    # -- retries ----------------------------------------------------------------------------
    def with_retries(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` again after connection errors and 5xx answers, with exponential backoff."""
        delay = self.backoff
        for attempt in range(self.retries + 1):
            try:
                return fn()
            except (httpx.TransportError, Transient, OSError, http.client.HTTPException) as exc:
                if attempt == self.retries:
                    raise Unavailable(f"{what} failed at {self.registry.host}: {_describe(exc)}") from None
                log.info("%s failed (%s), retrying in %.2fs", what, _describe(exc), delay)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # -- requests ---------------------------------------------------------------------------
    def want(self, scope: str) -> None:
        """Ask for ``scope`` in the next token before any challenge names it (e.g. the pull
        scope of the repository a blob is mounted from)."""
        _merge_scope(self._scopes, scope)

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                body: Callable[[], Any] | bytes | None = None, what: str = "") -> httpx.Response:
        """A whole request with retries; the answer's body is read."""
        return self.with_retries(what or f"{method} {path.split('?')[0]}",
                                 lambda: self.send(method, path, headers=headers, body=body))

    def send(self, method: str, path: str, *, headers: dict[str, str] | None = None,
             body: Callable[[], Any] | bytes | None = None, stream: bool = False) -> httpx.Response:
        """One request without retries, answering challenges. Raises ``Transient`` for
        5xx/429; a streamed answer must be closed by the caller."""
        challenges_answered = 0
        while True:
            request_headers = dict(headers or {})
            sent_authorization = self._authorization
            if sent_authorization:
                request_headers["Authorization"] = sent_authorization
            content = body() if callable(body) else body
            request = self.client.build_request(method, self.url(path), headers=request_headers, content=content)
            response = self.client.send(request, stream=stream)
            log.debug("%s %s -> %s", method, request.url.path, response.status_code)
            if response.status_code == 401 and challenges_answered < 2:
                header = response.headers.get("www-authenticate", "")
                response.close()
                with self._auth_lock:
                    # another thread may have answered the same challenge meanwhile
                    if self._authorization == sent_authorization:
                        self._answer(header)
                challenges_answered += 1
                continue
            if response.status_code >= 500 or response.status_code == 429:
                response.close()
                raise Transient(response)
            return response

    def stream_get(self, path: str, redirects: int = 5) -> http.client.HTTPResponse:
        """A streamed blob GET through the standard library's http.client, which reads bodies
        several times faster than httpx (blob downloads are where the time goes). Follows
        redirects (blob storage elsewhere), sending credentials only to the registry itself;
        answers challenges like ``send``. Raises ``Transient`` for 5xx/429; an answer other than
        200 is mapped to moorage's errors. The caller closes the response."""
        url = self.url(path)
        challenges_answered = 0
        while True:
            parts = urlsplit(url)
            headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
            sent_authorization = self._authorization
            if sent_authorization and f"{parts.scheme}://{parts.netloc}" == self.registry.url:
                headers["Authorization"] = sent_authorization
            if parts.scheme == "https":
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                conn: http.client.HTTPConnection = http.client.HTTPSConnection(parts.netloc, timeout=self.timeout,
                                                                               context=self._ssl)
            else:
                conn = http.client.HTTPConnection(parts.netloc, timeout=self.timeout)
            try:
                conn.request("GET", parts.path + (f"?{parts.query}" if parts.query else ""), headers=headers)
                response = conn.getresponse()
            except BaseException:
                conn.close()
                raise
            log.debug("GET %s -> %s (stream)", parts.path, response.status)
            status = response.status
            if status in (301, 302, 303, 307, 308) and redirects > 0 and response.getheader("location"):
                url = urljoin(url, response.getheader("location"))
                redirects -= 1
                conn.close()
                continue
            if status == 200:
                return response
            body = response.read()
            conn.close()
            if status == 401 and challenges_answered < 2:
                with self._auth_lock:
                    if self._authorization == sent_authorization:
                        self._answer(response.getheader("www-authenticate") or "")
                challenges_answered += 1
                continue
            answer = httpx.Response(status, headers=response.getheaders(), content=body,
                                    request=httpx.Request("GET", url))
            if status >= 500 or status == 429:
                raise Transient(answer)
            self.check(answer, f"blob {parts.path.rsplit('/', 1)[-1]}")

    def _answer(self, header: str) -> None:
        scheme, params = parse_challenge(header)
        if scheme == "basic":
            if not self._auth.username:
                raise Unauthorized(f"authentication required by {self.registry.host}")
            if self._authorization and self._authorization.startswith("Basic "):
                raise Unauthorized(WRONG_LOGIN)
            creds = f"{self._auth.username}:{self._auth.password}".encode()
            self._authorization = "Basic " + base64.b64encode(creds).decode()
            return
        if scheme != "bearer" or "realm" not in params:
            raise Unauthorized(f"{self.registry.host} asks for an unsupported authentication ({scheme or 'none'})")
        for scope in params.get("scope", "").split():
            _merge_scope(self._scopes, scope)
        if self._token_scopes is not None and _covers(self._token_scopes, self._scopes) \
                and params.get("error") != "invalid_token":
            denied = params.get("scope") or "this request"
            raise Unauthorized(f"access to {denied} denied by {self.registry.host}")
        self._fetch_token(params)

    def _fetch_token(self, params: dict[str, str]) -> None:
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for resource, actions in sorted(self._scopes.items()):
            query.append(("scope", f"{resource}:{','.join(sorted(actions))}"))
        basic = None
        if self._auth.username:
            basic = httpx.BasicAuth(self._auth.username, self._auth.password)
        wanted = {k: set(v) for k, v in self._scopes.items()}

        def fetch() -> httpx.Response:
            response = self.client.get(params["realm"], params=query, auth=basic)
            if response.status_code >= 500:
                raise Transient(response)
            return response

        response = self.with_retries("token request", fetch)
        if response.status_code in (401, 403):
            anonymous = f"{self.registry.host} refused an anonymous token"
            raise Unauthorized(WRONG_LOGIN if self._auth.username else anonymous)
        if response.status_code != 200:
            raise Unavailable(f"token server of {self.registry.host} answered HTTP {response.status_code}")
        try:
            data = response.json()
            token = data.get("token") or data.get("access_token")
        except ValueError:
            token = None
        if not token:
            raise Unavailable(f"token server of {self.registry.host} sent no token")
        self._authorization = f"Bearer {token}"
        self._token_scopes = wanted
        self.tokens_fetched += 1

    # -- answers ----------------------------------------------------------------------------
    def check(self, response: httpx.Response, what: str, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        """Map an unexpected answer to moorage's errors."""
        if response.status_code in ok:
            return response
        message = f"{what}: {registry_error(response)}"
        if response.status_code == 404:
            raise NotFound(message)
        if response.status_code == 401:
            raise Unauthorized(message)
        if response.status_code == 403:
            raise Forbidden(message)
        raise Unavailable(f"{message} (HTTP {response.status_code})")


def _merge_scope(scopes: dict[str, set[str]], scope: str) -> None:
    resource, _, actions = scope.rpartition(":")
    if resource:
        scopes.setdefault(resource, set()).update(a for a in actions.split(",") if a)


def _covers(have: dict[str, set[str]], want: dict[str, set[str]]) -> bool:
    return all(actions <= have.get(resource, set()) for resource, actions in want.items())


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
