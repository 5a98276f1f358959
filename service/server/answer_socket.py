"""The client's socket as gunicorn's answer writer sees it: an answer's head and first body bytes in one send.

Gunicorn writes an answer's head on its own, just before the first body bytes (a stream's too:
its head goes out with its first events, not before). When the app asks for it (`hold_head`,
called by service.edge.pipeline before the head is written), the head waits for those bytes and
both go out in one send: one system call and one packet fewer a request. Whatever else writes or
ends the connection sends a held head first, so the bytes on the wire are the same, in the same
order; every other use is the socket's own.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from service.core.sockets import send_all


class AnswerSocket:
    __slots__ = ("_held", "_holding", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._holding = False  # the next write is a whole answer's head: keep it for the body
        self._held: bytes | None = None

    def hold_head(self) -> None:
        self._holding = True

    def sendall(self, data: Any, *flags: int) -> None:
        if self._holding:
            self._holding = False
            self._held = bytes(data)
            return
        held = self._held
        if held is not None:
            self._held = None
            data = held + bytes(data)
        send_all(self._sock, data, *flags)

    def flush(self) -> None:
        """Send a held head (an answer with no body bytes, or one that failed after its head)."""
        self._holding = False
        held, self._held = self._held, None
        if held is not None:
            send_all(self._sock, held)

    def send(self, data: Any, *flags: int) -> int:
        self.flush()
        return self._sock.send(data, *flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        self.flush()
        return self._sock.sendfile(file, offset, count)

    def shutdown(self, how: int) -> None:
        self.flush()
        self._sock.shutdown(how)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.flush()
        self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)
