"""moorage's own nftables table: masquerade for the bridge subnet and DNAT for published ports.

Everything lives in one ``table ip <name>`` that the bridge driver creates at start (replacing
a leftover of a killed daemon) and deletes at shutdown, so moorage never edits rules it does not
own. Published ports are elements of four maps (tcp/udp × "any host address"/"one host
address"), so publishing and unpublishing a port is adding or deleting one element: no rule
handles to track. The chains mirror Docker's iptables rules (reference §7.3):

- ``prerouting`` (nat, dstnat) and ``output`` (nat, not for 127.0.0.0/8) jump to ``ports`` for
  packets addressed to a local address;
- ``ports`` skips packets coming from the bridge (the userland proxy serves those) and DNATs
  the rest through the maps;
- ``postrouting`` masquerades what the subnet sends outside of it.
"""

from __future__ import annotations

import ctypes
import ipaddress
import subprocess
import threading

from moorage.core.sdk.errors import DriverError

NFT = "nft"
LIBNFTABLES = "libnftables.so.1"


def run_nft(script: str) -> str:
    """Run an ``nft -f -`` script atomically; DriverError with nft's message on failure."""
    try:
        proc = subprocess.run([NFT, "-f", "-"], input=script, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise DriverError("the nft command is not installed") from None
    if proc.returncode != 0:
        raise DriverError(f"nft failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


class Nft:
    """Runs nft scripts through libnftables (the library behind the ``nft`` command) when it
    can be loaded, else through the command. The library saves a process per change (a
    fraction of a millisecond instead of several); one context per driver, used under a lock
    because a context is not thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lib = None
        self._ctx = None
        try:
            lib = ctypes.CDLL(LIBNFTABLES)
        except OSError:
            return
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error", "nft_ctx_free"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            return
        lib.nft_ctx_buffer_output(ctx)
        lib.nft_ctx_buffer_error(ctx)
        self._lib, self._ctx = lib, ctx

    def run(self, script: str) -> str:
        """Run ``script`` as one transaction; DriverError with nft's message on failure."""
        with self._lock:
            if self._lib is None:
                return run_nft(script)
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, script.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise DriverError(f"nft failed: {err.strip() or out.strip()}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._lib is not None and self._ctx:
                self._lib.nft_ctx_free(self._ctx)
            self._lib = self._ctx = None



def _map_name(proto: str, host_ip: str) -> str:
    return f"dnat-{proto}-{'any' if _is_any(host_ip) else 'ip'}"


def _is_any(host_ip: str) -> bool:
    return host_ip in ("", "0.0.0.0")


class NatTable:
    """The driver's table ``ip <name>`` for ``bridge`` and its ``subnet``."""

    def __init__(self, name: str, bridge: str, subnet: ipaddress.IPv4Network) -> None:
        self.name = name
        self.bridge = bridge
        self.subnet = subnet
        self.nft = Nft()

    def create(self) -> None:
        """(Re)create the table with its maps and chains, in one transaction."""
        maps = []
        for proto in ("tcp", "udp"):
            maps.append(f"  map dnat-{proto}-any {{ type inet_service : ipv4_addr . inet_service; }}")
            maps.append(f"  map dnat-{proto}-ip {{ type ipv4_addr . inet_service : ipv4_addr . inet_service; }}")
        dnat = []
        for proto in ("tcp", "udp"):
            dnat.append(f"    dnat ip to ip daddr . {proto} dport map @dnat-{proto}-ip")
            dnat.append(f"    dnat ip to {proto} dport map @dnat-{proto}-any")
        script = "\n".join([
            # declaring the table first makes the delete valid whether or not it existed
            f"table ip {self.name}",
            f"delete table ip {self.name}",
            f"table ip {self.name} {{",
            *maps,
            "  chain ports {",
            f'    iifname "{self.bridge}" return',
            *dnat,
            "  }",
            "  chain prerouting {",
            "    type nat hook prerouting priority dstnat; policy accept;",
            "    fib daddr type local jump ports",
            "  }",
            "  chain output {",
            "    type nat hook output priority -100; policy accept;",
            "    ip daddr != 127.0.0.0/8 fib daddr type local jump ports",
            "  }",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            f"    ip saddr {self.subnet} ip daddr != {self.subnet} masquerade",
            "  }",
            "}",
            "",
        ])
        self.nft.run(script)

    def delete(self) -> None:
        """Remove the table (a missing table is fine) and let go of the nft context."""
        try:
            self.nft.run(f"table ip {self.name}\ndelete table ip {self.name}\n")
        finally:
            self.nft.close()

    def _element(self, proto: str, host_ip: str, host_port: int) -> str:
        return str(host_port) if _is_any(host_ip) else f"{host_ip} . {host_port}"

    def add_mapping(self, proto: str, host_ip: str, host_port: int, target_ip: str, target_port: int) -> None:
        key = self._element(proto, host_ip, host_port)
        self.nft.run(f"add element ip {self.name} {_map_name(proto, host_ip)} "
                f"{{ {key} : {target_ip} . {target_port} }}\n")

    def remove_mapping(self, proto: str, host_ip: str, host_port: int) -> None:
        """Drop one port's DNAT; a missing element (or table) is fine."""
        key = self._element(proto, host_ip, host_port)
        try:
            self.nft.run(f"delete element ip {self.name} {_map_name(proto, host_ip)} {{ {key} }}\n")
        except DriverError as exc:
            if "No such file or directory" not in str(exc):
                raise
