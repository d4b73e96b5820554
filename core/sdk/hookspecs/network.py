"""Network drivers: a container's network namespace, addresses and published ports.

Vocabulary. The *host side* (a bridge, NAT rules) is prepared when the driver is instantiated
at daemon start and torn down by ``cleanup``. A container *joins* when its process exists:
the exec driver calls core, core calls ``join`` with a host pid inside the container's new
network namespace (``/proc/<pid>/ns/net``). *Publishing* makes container ports reachable on
host ports. *Leaving* (at stop) undoes the join and the publishing but keeps the container's
address reserved; *release* (at removal) gives the address back.

Flow::

    endpoint = driver.join(cid, pid, ports=requested_bindings)   # before the command runs
    ...                                                          # the container runs
    driver.leave(cid)                                            # after it exits
    driver.release(cid)                                          # DELETE /containers/{id}

A driver whose containers share the host's namespace sets ``isolates = False``; core then
tells the exec driver not to create a network namespace. A driver whose ``join`` configures
nothing in the namespace (it only looks at it) sets ``configures = False``; core then calls
``join`` right after the command started, which spares every start a round trip between the
exec driver's process and the daemon. Everything is kept in the driver's
``home`` so that a restarted daemon can ``restore`` joined containers.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import ClassVar

from moorage.core.sdk.driver import Driver
from moorage.core.sdk.hookspecs import hookspec


@dataclass(frozen=True)
class PortBinding:
    """One host side of a published port. Empty ``host_ip`` means the daemon default
    (``0.0.0.0``); ``host_port`` 0 means "pick a free port" in 49153–65535."""

    host_ip: str = ""
    host_port: int = 0


@dataclass
class Endpoint:
    """What a joined container's network looks like, shown in ``NetworkSettings``."""

    ip_address: str = ""
    ip_prefix_len: int = 0
    gateway: str = ""
    bridge: str = ""
    #: ``"80/tcp"`` -> the bindings actually made (ports resolved), or None if only exposed.
    ports: dict[str, list[PortBinding] | None] = field(default_factory=dict)


class NetworkDriver(Driver, abc.ABC):
    """Connects containers to a network. Methods block and run in core's worker threads."""

    #: Whether containers get their own network namespace (False: they share the host's).
    isolates: ClassVar[bool] = True
    #: Whether ``join`` must run before the command does (it configures the namespace). False:
    #: core calls it right after the start instead.
    configures: ClassVar[bool] = True
    #: Whether ``join`` publishes ports on the host (False: bindings are ignored, and the
    #: returned ``Endpoint.ports`` shows every requested port as exposed only, i.e. None).
    publishes: ClassVar[bool] = True

    @abc.abstractmethod
    def join(self, container_id: str, pid: int, ports: dict[str, list[PortBinding]],
             hostname: str = "") -> Endpoint:
        """Configure the namespace of ``pid`` (loopback up, interfaces, addresses, routes) and
        publish ``ports`` (keys ``"<port>/<proto>"``; every exposed port is a key, with an
        empty list when it is not published).

        A binding's empty ``host_ip`` becomes the daemon's default (``context.daemon.default_ip``,
        ``0.0.0.0`` unless configured) and ``host_port`` 0 a free port of 49153–65535; the returned
        ``Endpoint.ports`` holds the bindings actually made, and None for a port that is only
        exposed. A driver that keeps per-container state refuses a second ``join`` of a container
        that did not leave with ``Conflict``.

        Raises ``InvalidParameter`` for a malformed port key or host port, ``Conflict``
        ("Port already in use: N") for a host port that is taken, ``DriverError`` on a
        failure; on any error nothing of the join is left behind (interfaces, rules, proxies,
        host ports and any address newly reserved for it).
        """

    @abc.abstractmethod
    def leave(self, container_id: str) -> None:
        """Undo ``join`` after the container stopped: unpublish ports, remove host-side
        interfaces. The address stays reserved for the container. Safe to call twice, and for
        a container this driver instance never joined (e.g. one that died while the daemon
        was down)."""

    @abc.abstractmethod
    def release(self, container_id: str) -> None:
        """Forget the container (at removal): its address may be handed out again. Does what
        ``leave`` does if the container had not left. Unknown containers are ignored."""

    @abc.abstractmethod
    def restore(self, container_id: str, endpoint: Endpoint) -> None:
        """Re-adopt a container still running after a daemon restart (its port proxies,
        rules and address reservations are re-established from ``endpoint``, the ``Endpoint``
        its ``join`` returned). Raises ``Conflict`` if a published host port is now taken."""

    @abc.abstractmethod
    def status(self) -> list[tuple[str, str]]:
        """``[label, value]`` pairs shown in ``GET /info``."""

    @abc.abstractmethod
    def cleanup(self) -> None:
        """Called at daemon shutdown: remove host-side state (bridge rules, proxies, a bridge
        the driver created when no container is attached to it). Running containers keep
        their namespaces and addresses; ``restore`` re-establishes the rest. The instance is
        not used afterwards."""


@hookspec
def moorage_network_register() -> list[type[NetworkDriver]]:
    """Register network driver classes.

    :return: the ``NetworkDriver`` subclasses this plugin provides; the ``[network] driver``
        config key (and ``-b none`` for ``none``) selects one by its ``name``.

    Called once at daemon start, before any driver is instantiated.
    """
