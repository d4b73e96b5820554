"""The zygote: a single-threaded helper process that forks container monitors quickly.

Forking the daemon itself is hazardous (it is multi-threaded: a lock held by another thread
stays locked forever in the child) and starting a fresh interpreter per container costs
30-60 ms. So the driver starts this module once (``python -m``), it imports everything a
monitor needs, and then, per container, receives a JSON request and the monitor's end of the
start channel (SCM_RIGHTS) on its control socket and forks twice: the intermediate child
calls ``setsid`` and exits at once, so the monitor is in a session of its own, is not the
zygote's child and outlives both the zygote and the daemon. The zygote exits when the
driver's end of the control socket closes (the daemon stopped or died).
"""

from __future__ import annotations

import json
import os
import socket
import sys

from . import monitor

MAX_REQUEST = 1 << 20


def serve(control: socket.socket) -> None:
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 1)
        except InterruptedError:
            continue
        if not msg:
            return
        request = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            try:
                control.close()
                os.setsid()
                if os.fork() == 0:
                    monitor.main(request, fds[0])
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)
        os.waitpid(pid, 0)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # monitors must not hold the daemon's stdio (a test's pipe would never close)
        os.dup2(devnull, fd)
    os.close(devnull)
    serve(control)
    sys.exit(0)


if __name__ == "__main__":
    main()
