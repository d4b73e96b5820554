"""The lxc driver's zygote: a single-threaded helper that forks container monitors quickly.

Started once per driver instance (``python -m``), it imports the monitor and loads liblxc once;
per container it receives a JSON request and the monitor's end of the start channel
(SCM_RIGHTS) on its control socket and forks: the child calls ``setsid`` and becomes the
monitor, which outlives the zygote and the daemon. A fresh interpreter per container would cost
more than LXC's whole start (see bench/lxc_cycle.py). The zygote exits when the driver's end of
the control socket closes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

from . import liblxc, monitor

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
    for fd in (0, 1, 2):  # monitors must not hold the daemon's stdio
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir("/")  # nor its working directory
    try:
        liblxc.load()  # once, before forking: the launchers find it loaded
    except OSError:
        pass  # the launcher reports it
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # monitors are reaped by the kernel
    serve(control)
    sys.exit(0)


if __name__ == "__main__":
    main()
