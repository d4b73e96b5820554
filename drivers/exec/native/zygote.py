"""The zygote: a single-threaded helper process that forks container monitors quickly.

Forking the daemon itself is hazardous (it is multi-threaded: a lock held by another thread
stays locked forever in the child) and starting a fresh interpreter per container costs
30-60 ms. So the driver starts this module once (``python -m``), it imports everything a
monitor needs, and then, per container, receives a JSON request and the monitor's end of the
start channel (SCM_RIGHTS) on its control socket and hands both to a monitor it forked
ahead of time (the "spare"), then forks the next spare. A monitor calls ``setsid``, so it is
in a session of its own and outlives both the zygote and the daemon (it is re-parented to
init). The zygote exits when the driver's end of the control socket closes (the daemon stopped
or died), and its idle spare with it.
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


def fork_spare(control: socket.socket) -> socket.socket:
    """Fork the next monitor ahead of time; it waits for its request on the returned socket.

    The fork (and the page copies the child's first steps cause) then happen while no start
    is waiting. A spare that reads end-of-file (the zygote exited) exits.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        try:
            control.close()
            ours.close()
            os.setsid()
            msg, fds, _, _ = socket.recv_fds(theirs, MAX_REQUEST, 1)
            if msg and fds:
                theirs.close()
                monitor.main(json.loads(msg), fds[0])
        finally:
            os._exit(0)
    theirs.close()
    return ours


def serve(control: socket.socket) -> None:
    spare = fork_spare(control)
    try:
        while True:
            try:
                msg, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 1)
            except InterruptedError:
                continue
            if not msg:
                return
            try:
                socket.send_fds(spare, [msg], fds)
            finally:
                spare.close()
                for fd in fds:
                    os.close(fd)
                spare = fork_spare(control)
    finally:
        spare.close()


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
