"""Files core writes for a container: ``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``
(bind-mounted from the container's directory; their mount points are in the init layer, see
``init_layers``)."""

from __future__ import annotations

import os
from pathlib import Path

from moorage.core.sdk.store import replace_file


def hostname_file(hostname: str, domainname: str) -> bytes:
    return f"{hostname}\n".encode()


def hosts_file(hostname: str, domainname: str, address: str, links: dict[str, str]) -> bytes:
    """``links`` maps alias -> address."""
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    lines = [f"{address or '127.0.0.1'}\t{names}", "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
             "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix", "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    lines += [f"{ip}\t{alias}" for alias, ip in sorted(links.items())]
    return ("\n".join(lines) + "\n").encode()


def resolv_conf(dns: list[str], host_path: Path = Path("/etc/resolv.conf"), search: list[str] = ()) -> bytes:
    """The configured servers, else the host's resolv.conf as it is; ``search`` domains
    replace the host's."""
    if dns:
        text = "".join(f"nameserver {server}\n" for server in dns).encode()
    else:
        try:
            text = host_path.read_bytes()
        except OSError:
            text = b""
    if search:
        kept = [line for line in text.splitlines(keepends=True) if not line.lstrip().startswith(b"search")]
        text = f"search {' '.join(search)}\n".encode() + b"".join(kept)
    return text


def write_container_files(directory: Path, hostname: str, domainname: str, dns: list[str], address: str = "",
                          links: dict[str, str] | None = None, search: list[str] = ()) -> None:
    """Written at every start from the container's config: derived files, not state."""
    replace_file(directory / "hostname", hostname_file(hostname, domainname))
    replace_file(directory / "hosts", hosts_file(hostname, domainname, address, links or {}))
    replace_file(directory / "resolv.conf", resolv_conf(dns, search=search))


def safe_join(root: Path, path: str, follow_last: bool = False) -> Path:
    """``path`` inside the container tree ``root``, resolving symlinks as the container would
    (absolute links point into ``root``); the result never leaves ``root``. The last component
    is resolved only with ``follow_last``."""
    root = Path(os.path.realpath(root))
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink() and (parts or follow_last):
            hops += 1
            if hops > 40:
                raise OSError(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = root
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        current = candidate
    return current
