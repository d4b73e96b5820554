"""The zygote: a single-threaded helper process that forks container monitors quickly.

Forking the daemon itself is hazardous (it is multi-threaded: a lock held by another thread
stays locked forever in the child) and starting a fresh interpreter per container costs
30-60 ms. So each driver starts its ``zygote`` module once (``python -m``); that module imports
everything its monitor needs and calls ``main`` here. Per container, the zygote receives a JSON
request (``requests.MonitorRequest``) and the monitor's end of the start channel (SCM_RIGHTS)
on its control socket and hands both to a forked monitor. A monitor calls ``setsid``, so it is
in a session of its own and outlives both the zygote and the daemon (it is re-parented to
init). The zygote exits when the driver's end of the control socket closes (the daemon stopped
or died).

With ``prefork`` the monitor is forked ahead of time (the "spare"), so that the fork and the
page copies of the child's first steps (``warm_up``) happen while no start is waiting; the idle
spare exits with the zygote.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
from collections.abc import Callable

MAX_REQUEST = 1 << 20

#: a monitor's life: the request as sent (JSON) and the start channel's fd
MonitorMain = Callable[[bytes, int], None]
WarmUp = Callable[[], None]


def fork_spare(control: socket.socket, monitor_main: MonitorMain, warm_up: WarmUp | None) -> socket.socket:
    """Fork the next monitor ahead of time; it runs ``warm_up`` and waits for its request on
    the returned socket.

    A spare that reads end-of-file (the zygote exited) exits.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    if os.fork() == 0:
        try:
            control.close()
            ours.close()
            os.setsid()
            if warm_up is not None:
                warm_up()
            msg, fds, _, _ = socket.recv_fds(theirs, MAX_REQUEST, 1)
            if msg and fds:
                theirs.close()
                monitor_main(msg, fds[0])
        finally:
            os._exit(0)
    theirs.close()
    return ours


def receive(control: socket.socket) -> tuple[bytes, list[int]]:
    """The next request and its fds; an empty request once the driver closed its end."""
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, MAX_REQUEST, 1)
            return msg, fds
        except InterruptedError:
            continue


def serve_prefork(control: socket.socket, monitor_main: MonitorMain, warm_up: WarmUp | None) -> None:
    spare = fork_spare(control, monitor_main, warm_up)
    try:
        while True:
            msg, fds = receive(control)
            if not msg:
                return
            try:
                socket.send_fds(spare, [msg], fds)
            finally:
                spare.close()
                for fd in fds:
                    os.close(fd)
                spare = fork_spare(control, monitor_main, warm_up)
    finally:
        spare.close()


def serve(control: socket.socket, monitor_main: MonitorMain) -> None:
    while True:
        msg, fds = receive(control)
        if not msg:
            return
        if os.fork() == 0:
            try:
                control.close()
                os.setsid()
                monitor_main(msg, fds[0])
            finally:
                os._exit(0)
        for fd in fds:
            os.close(fd)


def main(monitor_main: MonitorMain, prefork: bool, warm_up: WarmUp | None = None) -> None:
    """The zygote's life: ``sys.argv[1]`` is the control socket's fd; exits when it closes."""
    control = socket.socket(fileno=int(sys.argv[1]))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # monitors must not hold the daemon's stdio (a test's pipe would never close)
        os.dup2(devnull, fd)
    os.close(devnull)
    os.chdir("/")  # a monitor must not keep the daemon's working directory (a mount) busy
    # Monitors are this process's children, reaped by the kernel (no zombies, no waitpid); they
    # are in sessions of their own and are re-parented to init when this process exits.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    if prefork:
        # Everything imported so far is shared with every monitor; keep the collector from
        # touching (and so copying) those pages in the children.
        gc.freeze()
        serve_prefork(control, monitor_main, warm_up)
    else:
        serve(control, monitor_main)
    sys.exit(0)
