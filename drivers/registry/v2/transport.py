"""One registry conversation: an httpx client with retries and the registry's auth dance.

Auth follows the registry's ``WWW-Authenticate`` challenges: ``Basic`` sends the credentials,
``Bearer realm=,service=,scope=`` fetches a token from the realm for every scope seen so far in
this session, so a token is fetched again when the scope grows (a pull token is not enough for
the upload that follows it). Credentials live only in this object's memory.

Where credentials may go (``CredentialPolicy``): the ``Authorization`` header only to the
registry's own origin (scheme, host and port), never along a redirect to another; a challenge
is answered only when the registry itself sent it; a token realm gets the username and
password only when it is on the registry's host name or a host the config names
(``token_realms``), else its token is asked for anonymously; and nothing secret is sent over
plain http unless that host is a loopback or configured insecure registry.

Every answer read into memory is bounded (``MAX_DOCUMENT``, as containerd bounds manifests and
configs) by its ``Content-Length`` before the read, and while reading.
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

from moorage.core.sdk.errors import Forbidden, InvalidParameter, NotFound, Unauthorized, Unavailable, storage_full
from moorage.core.sdk.hookspecs.registry import AuthConfig
from moorage.drivers.registry.v2.reference import Registry, is_local

log = logging.getLogger(__name__)
T = TypeVar("T")


def user_agent(version: str) -> str:
    """What the client calls itself: the daemon's version, and the API it speaks."""
    return f"moorage/{version} (docker-api/1.6)"


WRONG_LOGIN = "Wrong login/password, please try again"
_PARAM = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
#: The largest manifest, config, token answer, error body or list page read into memory
#: (containerd's limit for manifests and configs).
MAX_DOCUMENT = 4 << 20
REDIRECTS = 5
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
#: Token realms that serve the Hub's own registry (``auth.docker.io``).
HUB_TOKEN_REALMS = ("auth.docker.io",)


class TooLarge(InvalidParameter):
    """An answer larger than the bound for its kind; not retried."""


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class CredentialPolicy:
    """Which URLs may receive this session's credentials (see the module)."""

    def __init__(self, registry: Registry, insecure: tuple[str, ...] = (), token_realms: tuple[str, ...] = ()) -> None:
        self.registry = registry
        self.insecure = tuple(h.lower() for h in insecure)
        self.token_realms = tuple(h.lower() for h in (*token_realms, *(HUB_TOKEN_REALMS if registry.is_hub else ())))

    def _plain_http_allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme == "https":
            return True
        return parts.scheme == "http" and (is_local(parts.netloc) or parts.netloc.lower() in self.insecure
                                           or (parts.hostname or "") in self.insecure)

    def to_registry(self, url: str) -> bool:
        """Whether a request to ``url`` may carry the registry's ``Authorization``."""
        return origin(url) == origin(self.registry.url) and self._plain_http_allowed(url)

    def to_realm(self, realm: str) -> bool:
        """Whether the token realm ``realm`` may receive the username and password."""
        parts = urlsplit(realm)
        host, netloc = (parts.hostname or "").lower(), parts.netloc.lower()
        own = urlsplit(self.registry.url).hostname or ""
        trusted = host == own.lower() or host in self.token_realms or netloc in self.token_realms
        return trusted and self._plain_http_allowed(realm)


def read_bounded(response: httpx.Response, limit: int, what: str) -> bytes:
    """The body of a streamed ``response``, refused with ``TooLarge`` beyond ``limit`` bytes:
    by its ``Content-Length`` before anything is read, then while it is read. A compressed
    answer (a registry ignoring ``Accept-Encoding: identity``) is refused too, as its size in
    memory is not the size on the wire. Closes the response."""
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise TooLarge(f"{what} is {int(declared)} bytes, more than the {limit} allowed")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise Unavailable(f"{what} came {encoding}-encoded although identity was asked for")
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > limit:
                raise TooLarge(f"{what} is more than the {limit} bytes allowed")
        return bytes(body)
    finally:
        response.close()


def _with_body(response: httpx.Response, body: bytes) -> httpx.Response:
    """A read answer: ``response``'s status and headers with ``body`` as its content."""
    headers = [(k, v) for k, v in response.headers.multi_items()
               if k.lower() not in ("content-encoding", "transfer-encoding", "content-length")]
    return httpx.Response(response.status_code, headers=headers, content=body, request=response.request)


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
                 timeout: float = 60.0, insecure: tuple[str, ...] = (), token_realms: tuple[str, ...] = (),
                 agent: str = "moorage") -> None:
        self.registry = registry
        self.agent = agent
        self._auth = auth
        self.policy = CredentialPolicy(registry, insecure, token_realms)
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._ssl: ssl.SSLContext | None = None
        # redirects are followed by ``send``, which decides where credentials go
        self.client = httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                                   follow_redirects=False,
                                   headers={"User-Agent": agent, "Accept-Encoding": "identity"})
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
                full = storage_full(exc)
                if full is not None:  # our disk, not the registry: retrying cannot help
                    raise full from exc
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
             body: Callable[[], Any] | bytes | None = None, stream: bool = False,
             limit: int = MAX_DOCUMENT) -> httpx.Response:
        """One request without retries, following redirects and answering the registry's
        challenges. Raises ``Transient`` for 5xx/429. Without ``stream`` the body is read, at
        most ``limit`` bytes (``TooLarge``); a streamed answer must be closed by the caller."""
        challenges_answered = 0
        url, redirects = self.url(path), REDIRECTS
        while True:
            request_headers = dict(headers or {})
            sent_authorization = self._authorization
            if sent_authorization and self.policy.to_registry(url):
                request_headers["Authorization"] = sent_authorization
            content = body() if callable(body) else body
            request = self.client.build_request(method, url, headers=request_headers, content=content)
            response = self.client.send(request, stream=True)
            status = response.status_code
            log.debug("%s %s -> %s", method, request.url.path, status)
            if status in _REDIRECT_STATUSES and redirects > 0 and response.headers.get("location"):
                response.close()
                url, redirects = urljoin(url, response.headers["location"]), redirects - 1
                if status == 303:
                    method, body = "GET", None
                continue
            if status == 401 and challenges_answered < 2:
                header = response.headers.get("www-authenticate", "")
                response.close()
                self._challenged(url, header, sent_authorization)
                challenges_answered += 1
                continue
            if status >= 500 or status == 429:
                response.close()
                raise Transient(response)
            if stream:
                return response
            return _with_body(response, read_bounded(response, limit, f"the answer to {method} {request.url.path}"))

    def _challenged(self, url: str, header: str, sent_authorization: str | None) -> None:
        """Answer a 401 from ``url``: only the registry's own challenges are answered."""
        if origin(url) != origin(self.registry.url):
            raise Unauthorized(f"{urlsplit(url).netloc} asked for credentials while serving {self.registry.host}; "
                               "credentials go only to the registry itself")
        with self._auth_lock:
            # another thread may have answered the same challenge meanwhile
            if self._authorization == sent_authorization:
                self._answer(header)

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
            headers = {"User-Agent": self.agent, "Accept-Encoding": "identity"}
            sent_authorization = self._authorization
            if sent_authorization and self.policy.to_registry(url):
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
            declared = response.getheader("content-length") or ""
            if declared.isdigit() and int(declared) > MAX_DOCUMENT:
                conn.close()
                raise TooLarge(f"the answer to GET {parts.path} is {declared} bytes, more than {MAX_DOCUMENT}")
            body = response.read(MAX_DOCUMENT + 1)
            conn.close()
            if len(body) > MAX_DOCUMENT:
                raise TooLarge(f"the answer to GET {parts.path} is more than {MAX_DOCUMENT} bytes")
            if status == 401 and challenges_answered < 2:
                self._challenged(url, response.getheader("www-authenticate") or "", sent_authorization)
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
            if not self.policy.to_registry(self.registry.url):
                raise Unauthorized(f"{self.registry.host} asks for credentials over plain http; they are sent only "
                                   "over TLS, or to a registry listed in [registry.v2] insecure_registries")
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
        realm = params["realm"]
        if urlsplit(realm).scheme not in ("http", "https"):
            raise Unauthorized(f"{self.registry.host} names an unusable token realm {realm[:100]!r}")
        basic = None
        if self._auth.username:
            if self.policy.to_realm(realm):
                basic = httpx.BasicAuth(self._auth.username, self._auth.password)
            else:
                log.warning("token realm %s is not on %s nor in [registry.v2] token_realms (or is plain http): "
                            "asking it for an anonymous token", urlsplit(realm).netloc, self.registry.host)
        wanted = {k: set(v) for k, v in self._scopes.items()}

        def fetch() -> httpx.Response:
            request = self.client.build_request("GET", realm, params=query)
            if basic is not None:
                request = next(basic.auth_flow(request))
            response = self.client.send(request, stream=True)
            if response.status_code >= 500:
                response.close()
                raise Transient(response)
            return _with_body(response, read_bounded(response, MAX_DOCUMENT, "the token answer"))

        response = self.with_retries("token request", fetch)
        if response.status_code in (401, 403):
            anonymous = f"{self.registry.host} refused an anonymous token"
            raise Unauthorized(WRONG_LOGIN if basic is not None else anonymous)
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
