"""Lifecycle hooks: feature plugins observe (and may extend) what happens to containers and
images. Each is called after the fact, from a worker thread, with plain values; an exception
in a hook is logged and does not undo the action. All are ``firstresult``-free broadcasts.
"""

from __future__ import annotations

from . import hookspec


@hookspec
def moorage_container_created(container_id: str, config: dict) -> None:
    """A container was created.

    :param container_id: the full id.
    :param config: the merged create config (the ``Config`` of inspect).

    Called after the container is stored, before the create request is answered.
    """


@hookspec
def moorage_container_started(container_id: str, pid: int) -> None:
    """A container's process started.

    :param container_id: the full id.
    :param pid: the host pid of its first process.

    Called after the network is joined and before the start request is answered.
    """


@hookspec
def moorage_container_died(container_id: str, exit_code: int) -> None:
    """A container's process exited.

    :param container_id: the full id.
    :param exit_code: the exit status (``128 + n`` for signal ``n``).

    Called by core's monitor once the exit is recorded.
    """


@hookspec
def moorage_container_destroyed(container_id: str) -> None:
    """A container was removed.

    :param container_id: the full id it had.

    Called after its files, layers and names are gone.
    """


@hookspec
def moorage_image_pulled(name: str, tag: str, image_id: str) -> None:
    """An image was pulled from a registry.

    :param name: the repository as the client named it.
    :param tag: the tag pulled.
    :param image_id: the full id the tag now points at.

    Called once per pulled tag, after the tag is stored.
    """


@hookspec
def moorage_image_deleted(image_id: str) -> None:
    """An image was deleted from the store.

    :param image_id: the full id it had.

    Called after its layer and metadata are gone.
    """


@hookspec
def moorage_daemon_configured(config: dict) -> None:
    """The daemon's configuration is final.

    :param config: the effective configuration (file, then flags), with credentials removed.

    Called once at start, after the drivers are selected and before the API listens.
    """
