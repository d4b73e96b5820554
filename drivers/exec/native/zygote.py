"""The zygote: a single-threaded helper process that forks container monitors quickly.

Forking the daemon itself is hazardous (it is multi-threaded: a lock held by another thread
stays locked forever in the child) and starting a fresh interpreter per container costs
30-60 ms. So the driver starts this module once (``python -m``), it imports everything a
monitor needs, and then, per container, receives a JSON request and the monitor's end of the
start channel (SCM_RIGHTS) on its control socket and forks once: the monitor calls
``setsid``, so it is in a session of its own and outlives both the zygote and the daemon
(it is re-parented to init). The zygote exits when the driver's end of the control socket
closes (the daemon stopped or died).
"""

from __future__ import annotations

import gc
import json
import os
import signal
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
        if os.fork() == 0:
            try:
                control.close()
                os.setsid()
                monitor.main(request, fds[0])
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # monitors must not hold the daemon's stdio (a test's pipe would never close)
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir("/")  # a monitor must not keep the daemon's working directory (a mount) busy
    # Monitors are this process's children, reaped by the kernel (no zombies, no waitpid); they
    # are in sessions of their own and are re-parented to init when this process exits.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # Everything imported so far is shared with every monitor; keep the collector from touching
    # (and so copying) those pages in the children.
    gc.freeze()
    serve(control)
    sys.exit(0)


if __name__ == "__main__":
    main()
