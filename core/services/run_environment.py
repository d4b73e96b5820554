"""What every part of running containers shares: the container records and the drivers a run
uses, and the two things any part may do to a running process (signal it, thaw it)."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.core.kernel.lifecycle import LifecycleHooks
from moorage.core.sdk.errors import NotFound, NotSupported
from moorage.core.sdk.hookspecs.exec import ExecDriver
from moorage.core.sdk.hookspecs.graph import GraphDriver
from moorage.core.sdk.hookspecs.network import NetworkDriver
from moorage.core.services.container import Container
from moorage.core.services.containers import ContainerService


@dataclass(frozen=True)
class RunEnvironment:
    containers: ContainerService
    #: the selected exec driver, or None: then nothing can run (``exec`` says so)
    exec_driver: ExecDriver | None
    #: the selected network driver, or None for loopback only
    network: NetworkDriver | None
    hooks: LifecycleHooks

    @property
    def graph(self) -> GraphDriver:
        return self.containers.graph

    @property
    def exec(self) -> ExecDriver:
        if self.exec_driver is None:
            raise NotSupported("no exec driver is available in this daemon")
        return self.exec_driver

    def signal(self, container: Container, signum: int) -> None:
        try:
            self.exec.signal(container.id, signum)
        except NotFound:
            pass  # already gone: the monitor records the exit

    def thaw(self, container: Container) -> None:
        """A frozen container cannot act on a signal: stop and kill thaw it first."""
        if container.state.paused:
            try:
                self.exec.unpause(container.id)
            except NotFound:
                pass
            container.state.paused = False
