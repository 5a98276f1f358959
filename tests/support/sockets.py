"""A real socket that remembers what was written to it, write by write."""

from __future__ import annotations

import socket


class CountingSocket(socket.socket):
    """A real socket that counts its writes (send, or sendall for what a send left)."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.writes: list[bytes] = []

    def send(self, data, *flags):  # type: ignore[override]
        self.writes.append(bytes(data))
        return super().send(data, *flags)

    def sendall(self, data, *flags):  # type: ignore[override]
        self.writes.append(bytes(data))
        return super().sendall(data, *flags)
