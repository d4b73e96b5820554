"""The monitor's connections on ``monitor.sock`` (``protocol``): accepted without blocking, fed
output through a bounded queue each, dropped when they go away or fall too far behind."""

from __future__ import annotations

import selectors
import socket

from moorage.drivers.exec.common import protocol

MAX_CLIENT_BACKLOG = 4 << 20  # bytes queued for a slow attach client before it is dropped


class Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.parser = protocol.FrameParser()
        self.out = bytearray()
        self.attached = False
        self.waiting = False


class Clients:
    """Every connected client, registered with the monitor's selector (their key's data is the
    ``Client``)."""

    def __init__(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        self._by_fd: dict[int, Client] = {}

    def __iter__(self):
        return iter(list(self._by_fd.values()))

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        client = Client(sock)
        self._by_fd[sock.fileno()] = client
        self.sel.register(sock, selectors.EVENT_READ, client)

    def connected(self, client: Client) -> bool:
        return client.sock.fileno() in self._by_fd

    def queue(self, client: Client, data: bytes) -> None:
        if not self.connected(client):
            return  # dropped earlier in this round
        if len(client.out) > MAX_CLIENT_BACKLOG:
            self.drop(client)
            return
        was_empty = not client.out
        client.out += data
        if was_empty:
            self._send_out(client)

    def _send_out(self, client: Client) -> None:
        try:
            sent = client.sock.send(client.out)
            del client.out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            self.drop(client)
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if client.out else 0)
        self.sel.modify(client.sock, events, client)

    def drop(self, client: Client) -> None:
        fd = client.sock.fileno()
        if fd >= 0 and self._by_fd.pop(fd, None) is not None:
            self.sel.unregister(client.sock)
            client.sock.close()

    def receive(self, client: Client, events: int) -> list[tuple[int, bytes]]:
        """Send what is queued for ``client`` when it can take it, and the frames it sent
        (none once it is gone: it is dropped)."""
        if events & selectors.EVENT_WRITE:
            self._send_out(client)
            if not self.connected(client):
                return []
        if not events & selectors.EVENT_READ:
            return []
        try:
            data = client.sock.recv(65536)
        except BlockingIOError:
            return []
        except OSError:
            data = b""
        if not data:
            self.drop(client)
            return []
        return client.parser.feed(data)

    def close_all(self, exit_frame: bytes) -> None:
        """The monitor's last words: what is queued, and ``exit_frame`` to every client that
        waits, each sent within a few seconds; then every connection closes."""
        for client in self:
            if client.waiting:
                client.out += exit_frame
            client.sock.setblocking(True)
            client.sock.settimeout(5)
            try:
                client.sock.sendall(client.out)
            except OSError:
                pass
            client.sock.close()
