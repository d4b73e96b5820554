"""``docker exec`` for the native driver: a helper (``nsexec``) that joins the container's
cgroups and namespaces and runs the command under the container's confinement."""

from __future__ import annotations

import json
import sys

from moorage.core.sdk.errors import InvalidParameter, StateError
from moorage.core.sdk.hookspecs.exec import ExecProcess, ExecSpec
from moorage.drivers.exec.common import terminal
from moorage.drivers.exec.common.exec_child import ChildProcess

HELPER = "moorage.drivers.exec.native.nsexec"


def exec_in(pid: int, cgroup_files: list[str], spec: ExecSpec, capabilities: int,
            seccomp_program: str | None) -> ExecProcess:
    """Run ``spec`` in the container whose first process is host pid ``pid``, under the
    container's confinement: the ``capabilities`` mask and the compiled seccomp program
    (base64, None for none) that ``NativeDriver.confinement`` gave its first process. With a
    tty, the pty is one of the container's own devpts, opened by the helper inside it."""
    if not spec.args:
        raise InvalidParameter("No command specified")
    if not pid:
        raise StateError("the container is not running")
    config = {"pid": pid, "cgroup_files": cgroup_files, "args": list(spec.args), "env": list(spec.env),
              "user": spec.user, "working_dir": spec.working_dir, "capabilities": capabilities,
              "seccomp_program": seccomp_program, "tty": list(terminal.INITIAL_SIZE) if spec.tty else None}
    return ChildProcess([sys.executable, "-m", HELPER, json.dumps(config)], spec.tty, spec.open_stdin,
                        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, pty_from_child=True)
