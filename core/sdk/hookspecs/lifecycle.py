"""Lifecycle hooks: feature plugins observe (and may extend) what happens to containers and
images. Each is called after the fact, from a worker thread, with plain values. Every
hookimpl is called on its own (``moorage.core.kernel.lifecycle``): one that raises is logged with its
plugin's name, the others still run, and the action stands, its state written as if no hook
had run. All are ``firstresult``-free broadcasts.

A hookimpl may take any subset of a hook's parameters, so parameters added later (such as the
timings and driver names, for researchers comparing drivers) do not break older plugins.
Timings are wall-clock seconds measured with a monotonic clock; times are RFC 3339 in UTC, as
the API shows them.
"""

from __future__ import annotations

from moorage.core.sdk.hookspecs import hookspec


@hookspec
def moorage_container_created(container_id: str, config: dict, created: str, duration: float,
                              graph_driver: str) -> None:
    """A container was created.

    :param container_id: the full id.
    :param config: the merged create config (the ``Config`` of inspect); the hook's own copy.
    :param created: when, as inspect's ``Created``.
    :param duration: seconds the create took, from the request's body to the stored container
        (its layers included).
    :param graph_driver: the name of the graph driver that made its layer.

    Called after the container is stored, before the create request is answered.
    """


@hookspec
def moorage_container_started(container_id: str, pid: int, started: str, duration: float, exec_driver: str,
                              network_driver: str, graph_driver: str) -> None:
    """A container's process started.

    :param container_id: the full id.
    :param pid: the host pid of its first process.
    :param started: when, as inspect's ``State.StartedAt``.
    :param duration: seconds the start took: rootfs mount, files, the exec driver's start and
        the network join.
    :param exec_driver: the name of the exec driver that runs it.
    :param network_driver: the name of the network driver that joined it; empty for loopback
        only (``NetworkDisabled``).
    :param graph_driver: the name of the graph driver that mounted its rootfs.

    Called for every run (a start, a restart, a restart at daemon start) after the network
    is joined, before the start request is answered and before the run's exit can be reported.
    """


@hookspec
def moorage_container_died(container_id: str, exit_code: int, finished: str, run_time: float,
                           exec_driver: str, network_driver: str) -> None:
    """A container's process exited.

    :param container_id: the full id.
    :param exit_code: the exit status (``128 + n`` for signal ``n``).
    :param finished: when, as inspect's ``State.FinishedAt``.
    :param run_time: seconds from the start to the recorded exit (whole seconds from the
        recorded times when the run began under an earlier daemon).
    :param exec_driver: the name of the exec driver that ran it.
    :param network_driver: the name of the network driver it was joined to; empty for none.

    Called by core's monitor once the exit is known and the run's resources are released, just
    before the exit is saved (a failing hook does not keep it from being saved).
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
