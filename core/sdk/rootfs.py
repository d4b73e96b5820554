"""A small busybox root filesystem (about 2 MB) from the host's static busybox: what `moorage
bench`, the bench scripts, the contract suites and the tests run containers in."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DIRS = ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "proc", "sys", "dev", "root", "home", "var", "run")
PASSWD = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n" \
         "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\ndaemon:x:1:\nnogroup:x:65534:\n"


def find_busybox() -> Path | None:
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.exists():
            out = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True).stdout \
                if shutil.which("file") else "statically linked"
            if "statically linked" in out or "static-pie" in out:
                return path
    return None


def busybox_available() -> bool:
    return find_busybox() is not None


def make_busybox_rootfs(dest: Path) -> Path:
    """Create ``dest`` holding ``/bin/busybox``, a symlink per applet, /etc/passwd and group."""
    busybox = find_busybox()
    if busybox is None:
        raise FileNotFoundError("no static busybox found (install Debian's busybox-static)")
    dest = Path(dest)
    for d in DIRS:
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    applets = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc" / "passwd").write_text(PASSWD)
    (dest / "etc" / "group").write_text(GROUP)
    return dest


def tar_directory(source: Path, dest: Path) -> Path:
    """An uncompressed tar of ``source``'s content (entries relative, ``./`` prefixed)."""
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(source), arcname=".")
    return dest
