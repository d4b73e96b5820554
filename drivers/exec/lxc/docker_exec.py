"""``docker exec`` for the lxc driver: ``lxc-attach`` enters the running container's namespaces
and cgroups and applies its LXC confinement (the capabilities its config drops, its LSM
profile) before it runs the command."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from moorage.core.sdk.archive import open_in_root
from moorage.core.sdk.errors import InvalidParameter, NotSupported, StateError
from moorage.core.sdk.hookspecs.exec import ExecProcess, ExecSpec
from moorage.drivers.exec.common.exec_child import ChildProcess, failed_process
from moorage.drivers.exec.common.users import Identity, resolve

#: the most of /etc/passwd or /etc/group read to resolve a user
MAX_USER_FILE = 4 << 20


def user_identity(pid: int, user: str) -> Identity:
    """``user`` resolved in the container's own /etc/passwd and /etc/group, read inside its root
    (a symlink there cannot point the daemon at a host file)."""
    if not user:
        return Identity()
    with tempfile.TemporaryDirectory(prefix="moorage-exec-") as scratch:
        (Path(scratch) / "etc").mkdir()
        for name in ("etc/passwd", "etc/group"):
            try:
                fd = open_in_root(f"/proc/{pid}/root", name, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            with os.fdopen(fd, "rb") as f:
                (Path(scratch) / name).write_bytes(f.read(MAX_USER_FILE))
        return resolve(Path(scratch), user)


def attach_argv(name: str, lxcpath: Path, pid: int, spec: ExecSpec) -> list[str]:
    if not spec.args:
        raise InvalidParameter("No command specified")
    if not pid:
        raise StateError("the container is not running")
    lxc_attach = shutil.which("lxc-attach")
    if lxc_attach is None:
        raise NotSupported("lxc-attach is not installed (Debian package lxc)")
    identity = user_identity(pid, spec.user)
    argv = [lxc_attach, "-n", name, "-P", str(lxcpath), "--clear-env", "-u", str(identity.uid),
            "-g", str(identity.gid)]
    if spec.privileged:
        argv.append("--elevated-privileges=CAP")
    for entry in spec.env:
        argv += ["-v", entry]
    command = list(spec.args)
    if spec.working_dir and spec.working_dir != "/":
        # lxc-attach has no working directory option: the container's shell changes to it
        command = ["/bin/sh", "-c", 'cd -- "$0" && exec "$@"', spec.working_dir, *command]
    return [*argv, "--", *command]


def exec_in(name: str, lxcpath: Path, pid: int, spec: ExecSpec) -> ExecProcess:
    try:
        argv = attach_argv(name, lxcpath, pid, spec)
    except InvalidParameter as exc:
        if not spec.args:
            raise
        return failed_process(f"unable to find user {spec.user}: {exc.message}", 126, spec.tty, spec.open_stdin)
    return ChildProcess(argv, spec.tty, spec.open_stdin, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, raw=True)
