"""Names, references and paths from outside: one copy of each rule, checked where they enter.

Every check raises ``InvalidParameter`` (400) with a plain message and returns nothing, so
that a caller checks first and stores afterwards. Values are shown in messages with control
characters escaped and long values cut, so a hostile name cannot garble a terminal or a log.

The rules:

- a container name (and a link alias) is Docker's ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``, at most
  ``MAX_CONTAINER_NAME`` characters, with one optional leading ``/``;
- a repository is Docker 0.6.5's registry rule, applied to every name moorage stores (0.6.5
  checked only names it sent to a registry): an optional registry host first (a component
  with ``.`` or ``:``, or ``localhost``: a host name or bracketed IPv6 address with an
  optional port), then path components of lowercase ``[a-z0-9-_.]``, none of them ``.`` or
  ``..``, at most ``MAX_REPOSITORY`` characters in all;
- a tag is ``[\\w][\\w.-]{0,127}`` (ASCII), a digest ``sha256:`` + 64 or ``sha512:`` + 128
  lowercase hex digits;
- a path inside a container (``WorkingDir``, a bind's or a volume's destination, ``copy``'s
  ``Resource``) is resolved inside the container's root, so ``..`` cannot leave it: it has no
  NUL and at most ``PATH_MAX`` bytes, and ``clean_path`` cleans it as Go's ``path.Clean``
  (``/a/../b`` is ``/b``), as Docker does;
- a path used as-is on the host (a bind's source) keeps the stricter rule: no NUL, no control
  character and no ``..`` component (docs/security.md says why Docker differs);
- an argument or environment string has no NUL (execve cannot carry one) and at most
  ``MAX_ARG_STRLEN`` bytes; every other byte, newlines included, passes unchanged, as in Docker;
- a hostname is RFC 1123's (labels of letters, digits and inner hyphens, dot-separated), at
  most ``HOST_NAME_MAX`` bytes, as the kernel's ``sethostname`` takes it.
"""

from __future__ import annotations

import posixpath
import re

from moorage.core.sdk.errors import InvalidParameter

MAX_CONTAINER_NAME = 128
MAX_REPOSITORY = 255
#: Linux's PATH_MAX, counting the terminating NUL.
PATH_MAX = 4096
#: Linux's MAX_ARG_STRLEN: the longest single argument or environment string execve takes.
MAX_ARG = 131072
#: Linux's HOST_NAME_MAX (``__NEW_UTS_LEN``): the longest name ``sethostname`` takes.
HOST_NAME_MAX = 64

_CONTAINER_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", re.ASCII)
_TAG = re.compile(r"\w[\w.-]{0,127}", re.ASCII)
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_COMPONENT = re.compile(r"[a-z0-9_.-]+")
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?", re.ASCII)
#: C0 controls and DEL; a tab is allowed in free text only.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)


def shown(value: str, limit: int = 80) -> str:
    """``value`` for a message: control characters escaped (``a\\x00b``), cut at ``limit``."""
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(value)} characters)"


def is_registry_host(component: str) -> bool:
    """Whether the first component of an image name names a registry (0.6.5's rule)."""
    return "." in component or ":" in component or component == "localhost"


# -- names ------------------------------------------------------------------------------------
def check_container_name(name: str) -> None:
    """A container name as a client sends it (``foo`` or ``/foo``)."""
    bare = name[1:] if name.startswith("/") else name
    if len(bare) > MAX_CONTAINER_NAME:
        raise InvalidParameter(f"Invalid container name ({shown(name)}): at most {MAX_CONTAINER_NAME} "
                               "characters are allowed")
    if not _CONTAINER_NAME.fullmatch(bare):
        raise InvalidParameter(f"Invalid container name ({shown(name)}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
                               "allowed, at least two characters")


def check_link_alias(alias: str) -> None:
    """A link alias (``Links: ["name:alias"]``) follows the container name rule."""
    if not _CONTAINER_NAME.fullmatch(alias) or len(alias) > MAX_CONTAINER_NAME:
        raise InvalidParameter(f"Invalid link alias ({shown(alias)}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
                               f"allowed, two to {MAX_CONTAINER_NAME} characters")


def check_repository(name: str) -> None:
    """A repository name (without tag): ``[host[:port]/]component[/component...]``."""
    if not name:
        raise InvalidParameter("Repository name can't be empty")
    if "://" in name:
        raise InvalidParameter(f"Invalid repository name ({shown(name)}), it must not contain a scheme")
    if len(name) > MAX_REPOSITORY:
        raise InvalidParameter(f"Invalid repository name ({shown(name)}): at most {MAX_REPOSITORY} characters "
                               "are allowed")
    first, _, rest = name.partition("/")
    path = name
    if rest and is_registry_host(first):
        if not _HOST.fullmatch(first):
            raise InvalidParameter(f"Invalid repository name ({shown(name)}): {shown(first)} is not a registry "
                                   "host[:port]")
        path = rest
    for component in path.split("/"):
        if component in (".", "..") or not _COMPONENT.fullmatch(component):
            raise InvalidParameter(f"Invalid repository name ({shown(name)}), only [a-z0-9-_.] are allowed "
                                   "in each part, and no part may be empty, '.' or '..'")


def check_tag(tag: str) -> None:
    if not tag:
        raise InvalidParameter("Tag name can't be empty")
    if not _TAG.fullmatch(tag):
        raise InvalidParameter(f"Illegal tag name: {shown(tag)} (only [A-Za-z0-9_.-] are allowed, not starting "
                               "with '.' or '-', at most 128 characters)")


def is_digest(reference: str) -> bool:
    return bool(_DIGEST.fullmatch(reference))


def check_digest(digest: str) -> None:
    if not is_digest(digest):
        raise InvalidParameter(f"Invalid digest {shown(digest)}: sha256:<64 hex> or sha512:<128 hex> expected")


def check_tag_or_digest(reference: str) -> None:
    """What a pull may name after the repository: a tag or a content digest."""
    if not is_digest(reference):
        check_tag(reference)


# -- paths and text ---------------------------------------------------------------------------
def _check_length(value: str, limit: int, what: str) -> None:
    if len(value.encode("utf-8", "surrogatepass")) >= limit:
        raise InvalidParameter(f"Bad parameter: {what} {shown(value)} is longer than {limit - 1} bytes")


def check_no_nul(value: str, what: str) -> None:
    """A string the kernel takes as a C string: a NUL would cut it short."""
    if "\x00" in value:
        raise InvalidParameter(f"Bad parameter: {what} {shown(value)} contains a NUL byte")


def check_host_path(path: str, what: str) -> None:
    """A path the daemon uses as-is on the host (a bind's source)."""
    _check_length(path, PATH_MAX, what)
    if _CONTROL.search(path):
        raise InvalidParameter(f"Bad parameter: {what} {shown(path)} contains a NUL or control character")
    if ".." in path.split("/"):
        raise InvalidParameter(f"Bad parameter: {what} {shown(path)} must not contain '..'")


def check_container_path(path: str, what: str) -> None:
    """A path inside a container: every use resolves it inside the container's root, so a
    ``..`` cannot climb out of it; only what the kernel cannot take is refused."""
    _check_length(path, PATH_MAX, what)
    check_no_nul(path, what)


def clean_path(path: str, what: str) -> str:
    """A path inside a container (``check_container_path``), cleaned as Go's ``path.Clean``,
    as Docker cleans ``WorkingDir`` and bind destinations. ``""`` stays ``""``."""
    check_container_path(path, what)
    if not path:
        return path
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned  # POSIX keeps "//"; Go does not


def check_text(value: str, what: str) -> None:
    """An argument or environment string of a process: what execve takes."""
    _check_length(value, MAX_ARG, what)
    check_no_nul(value, what)


def check_hostname(hostname: str, what: str = "Hostname") -> None:
    """A container's hostname (RFC 1123, as Docker's CLI checks it); ``""`` means the default."""
    if not hostname:
        return
    if len(hostname.encode("utf-8", "surrogatepass")) > HOST_NAME_MAX or not _HOSTNAME.fullmatch(hostname):
        raise InvalidParameter(f"Bad parameter: invalid {what} {shown(hostname)}: RFC 1123 labels of letters, "
                               f"digits and inner hyphens, separated by dots, at most {HOST_NAME_MAX} characters")
