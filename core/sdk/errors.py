"""The typed error vocabulary shared by core, drivers and the API.

Drivers and core raise these; ``moorage.api.http.errors`` maps each class to an HTTP status in one
place. Nothing here knows about HTTP. The message is shown to the client as it is, so it should
read as a sentence about the user's request.
"""

import errno
import sqlite3


class MoorageError(Exception):
    """Base of every error moorage reports on purpose; anything else is an internal failure."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.__class__.__name__


class NotFound(MoorageError):
    """The named container, image, link, driver or file does not exist."""


class InvalidParameter(MoorageError):
    """A request parameter or config value is malformed (a bad boolean, integer, name...)."""


class Conflict(MoorageError):
    """The request clashes with existing state (a name in use, a tag held by two repos...)."""


class StateError(MoorageError):
    """The object's current state does not allow the request: starting a running container,
    attaching to, resizing or signalling one that is not running, writing to a closed stdin.
    Docker 0.6 answered these with 500, and so does moorage."""


class Impossible(StateError):
    """A ``StateError`` Docker 0.6 answered with 406 (its message began with "Impossible"):
    removing a running container. Raise ``StateError`` for any other state conflict."""


class Unauthorized(MoorageError):
    """Credentials were missing or refused."""


class Forbidden(MoorageError):
    """Credentials were accepted but the action is not allowed (e.g. an inactive account)."""


class NotSupported(MoorageError):
    """A driver cannot work on this host (a missing kernel feature, filesystem or tool).

    Auto-selection moves on to the next candidate driver when a driver's constructor raises
    this; for a driver the config names explicitly it is reported and the daemon stops.
    """


class Unavailable(MoorageError):
    """A remote service (a registry, a download URL) could not be reached or failed."""


class ConfigError(MoorageError):
    """The daemon configuration (file, flags, plugins) is wrong; the daemon does not start."""


class PluginError(ConfigError):
    """A plugin failed to load or registered something invalid."""


class JobFailed(MoorageError):
    """A long job whose output is streamed (a build) failed before its first output: Docker 0.6
    answered these with 500, whatever the cause. The message is the cause's."""


class DriverError(MoorageError):
    """A driver failed while doing its work (a mount, a syscall, a tool that exited non-zero)."""


class StorageFull(MoorageError):
    """The daemon's storage (its root, ``-g``) has no space or quota left for the request. What
    the request had written is removed; the daemon keeps serving, and the request can be sent
    again once space is freed."""


#: The errnos of a write that found no room: a full filesystem or an exhausted quota.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


#: What says the storage is full: an ``OSError`` or a SQLite error (the state databases).
STORAGE_ERRORS = (OSError, sqlite3.Error)


def storage_full(exc: BaseException) -> StorageFull | None:
    """``exc`` as a ``StorageFull`` when it is an ``OSError`` or a SQLite error saying the
    storage is full (the file it names goes only to the daemon's log), else None."""
    if (isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS
            or isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL):
        return StorageFull("no space left on the daemon's storage: free some (remove unused images "
                           "and containers) and try again")
    return None
