"""Links between containers (reference §3.2): a start registers its ``Links`` as edges of the
name graph, and each linked child gives the parent environment variables and a hosts entry."""

from __future__ import annotations

from moorage.core.sdk.errors import InvalidParameter, NotFound, StateError
from moorage.core.services.container import Container
from moorage.core.services.container_config import parse_link
from moorage.core.services.containers import ContainerService


def register_links(containers: ContainerService, container: Container) -> tuple[list[str], dict[str, str]]:
    """Register the host config's ``Links`` as name-graph edges, then build the env and hosts
    entries for every child linked under this container."""
    names = containers.names
    for spec in container.host_config.links or []:
        child_name, alias = parse_link(spec)
        child_id = names.resolve(child_name)
        if child_id is None:
            raise NotFound(f"Could not find entity for {child_name}")
        if child_id == container.id:
            raise InvalidParameter("Cannot link to yourself")
        names.link(container.name, alias, child_id)
    container.host_config.links = None  # links live in the name graph from now on
    env: list[str] = []
    hosts: dict[str, str] = {}
    for path, child_id in sorted(names.children(container.name).items()):
        child = containers.lookup(child_id)
        alias = path.rsplit("/", 1)[1]
        if child is None or not child.state.running:
            raise StateError(f"Cannot link to a non running container: {names.name_of(child_id)} AS {path}")
        ip = child.network.ip_address
        env += link_environment(alias, path, ip, child)
        if ip:
            hosts[alias] = ip
    return env, hosts


def link_environment(alias: str, path: str, ip: str, child: Container) -> list[str]:
    """The variables a link injects (reference §3.2)."""
    prefix = alias.upper()
    env = []
    exposed = sorted(child.config.exposed_ports or {},
                     key=lambda k: (int(k.split("/")[0]), k.split("/")[1] != "tcp"))
    if exposed:
        number, _, proto = exposed[0].partition("/")
        env.append(f"{prefix}_PORT={proto}://{ip}:{number}")
    for key in exposed:
        number, _, proto = key.partition("/")
        base = f"{prefix}_PORT_{number}_{proto.upper()}"
        env += [f"{base}={proto}://{ip}:{number}", f"{base}_ADDR={ip}", f"{base}_PORT={number}",
                f"{base}_PROTO={proto}"]
    env.append(f"{prefix}_NAME={path}")
    for entry in child.config.env or []:
        parts = entry.split("=")
        if len(parts) == 2 and parts[0] not in ("HOME", "PATH"):
            env.append(f"{prefix}_ENV_{parts[0]}={parts[1]}")
    return env
