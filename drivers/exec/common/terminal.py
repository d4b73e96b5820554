"""A container's terminal: the pty's window size, and a pty master handed over a unix socket.

A container's tty is a pty of the container's own devpts (its ``/dev/pts``, a new instance), as
in Docker: inside, ``tty`` names a ``/dev/pts/N`` that exists there and the container holds no
terminal of the host's devpts. So the pty is opened where the container's devpts is visible (by
the native driver's container process, or its ``docker exec`` helper after entering the
container), and only the master comes back to the daemon or the monitor, with ``SCM_RIGHTS``.
The side that receives it checks that it is a pty master before using it.

Light on imports: the exec helper (``native/nsexec``) imports this module before it enters a
container, where no further import may happen.
"""

from __future__ import annotations

import array
import fcntl
import os
import socket
import stat
import struct
import termios
import time

#: The window size a pty starts with, until a client resizes it.
INITIAL_SIZE = (24, 80)
#: The ptmx device (5, 2): what a pty master's ``fstat`` shows, in any devpts instance.
PTMX_RDEV = os.makedev(5, 2)
#: The one byte sent with the master.
MASTER_MESSAGE = b"M"


def set_size(fd: int, height: int, width: int) -> None:
    """Set the window size of the pty ``fd`` is an end of (``TIOCSWINSZ``)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def take_as_controlling(fd: int) -> None:
    """Make the tty ``fd`` the controlling terminal of the calling process, a session leader
    without one."""
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


def send_master(sock: socket.socket, master: int) -> None:
    """Hand the pty master ``master`` to the other end of ``sock`` (``receive_master``)."""
    socket.send_fds(sock, [MASTER_MESSAGE], [master])


def receive(sock: socket.socket, size: int) -> tuple[bytes, int]:
    """One read of at most ``size`` bytes from ``sock`` and the descriptor that came with them
    (close-on-exec; -1 if none; any more are closed). ``socket.recv_fds`` of Python 3.11 drops
    its flags, so the close-on-exec flag would be lost."""
    fds = array.array("i")
    data, ancillary, _, _ = sock.recvmsg(size, socket.CMSG_SPACE(fds.itemsize), socket.MSG_CMSG_CLOEXEC)
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    for extra in fds[1:]:
        os.close(extra)
    return data, fds[0] if fds else -1


def check_master(fd: int) -> None:
    """Raise ``OSError`` unless ``fd`` is a pty master (a devpts ptmx)."""
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != PTMX_RDEV:
        raise OSError(f"the descriptor received for the terminal is not a pty master (mode {st.st_mode:o})")


def receive_master(sock: socket.socket, timeout: float, limit: int) -> tuple[int, bytes]:
    """Read ``sock`` until the other end sends a pty master (``send_master``) or closes.

    Returns ``(master, said)``: the master (close-on-exec; -1 if the other end closed without
    sending one) and what it wrote before (its error, at most ``limit`` bytes kept). Raises
    ``TimeoutError`` after ``timeout`` seconds without either, and ``OSError`` if what came is
    not a pty master.
    """
    deadline = time.monotonic() + timeout
    said = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no terminal was set up in time")
        sock.settimeout(remaining)
        data, fd = receive(sock, 4096)
        if fd >= 0 and data.endswith(MASTER_MESSAGE):  # what was written before may come in the same read
            data = data[:-len(MASTER_MESSAGE)]
        said += data[:max(0, limit - len(said))]
        if fd >= 0:
            try:
                check_master(fd)
            except OSError:
                os.close(fd)
                raise
            return fd, bytes(said)
        if not data:
            return -1, bytes(said)
