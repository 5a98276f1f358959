"""An HTTP server written by hand on a raw socket: it sends exactly the bytes a test scripts, when
the test says, which no HTTP framework would (answers cut anywhere, one value split across TCP
writes, headers of any kind), and it sees what the client does with its connection.

    def answer(connection: RawConnection) -> None:
        connection.read_request()
        connection.send(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")

    with RawServer(answer) as server:      # each connection runs `answer` in a thread of its own
        ... server.url ...                 # http://127.0.0.1:<port>
        server.connections[0].requests     # the requests read on each connection, in order
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Self


class RawConnection:
    """One accepted connection, as the script sees it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.requests: list[bytes] = []  # each request's head and body
        self._buffer = b""

    def read_request(self) -> bytes:
        """The next request (its head, then the body its Content-Length announces); b"" when the
        client closed the connection instead of sending one."""
        while b"\r\n\r\n" not in self._buffer:
            data = self.sock.recv(65536)
            if not data:
                return b""
            self._buffer += data
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        while len(rest) < length:
            data = self.sock.recv(65536)
            if not data:
                break
            rest += data
        request, self._buffer = head + b"\r\n\r\n" + rest[:length], rest[length:]
        self.requests.append(request)
        return request

    def send(self, *pieces: bytes, pause: float = 0.0) -> None:
        """Send each piece in a write of its own (`pause` seconds apart, so they travel apart)."""
        for number, piece in enumerate(pieces):
            if number and pause:
                time.sleep(pause)
            self.sock.sendall(piece)

    def wait_for_eof(self, timeout: float) -> bool:
        """Whether the client closed its end within `timeout` seconds (whatever it sent first is read)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                if not self.sock.recv(65536):
                    return True
            except TimeoutError:
                return False
            except OSError:
                return True  # reset: closed all the same
        return False


class RawServer:
    """Listens on 127.0.0.1; runs `script(connection)` for each connection, then closes it.

    `backlog` is the listen queue's length; `accept=False` never accepts (connections wait in the
    queue, then, once it is full, are not even answered with a SYN-ACK).
    """

    def __init__(
        self, script: Callable[[RawConnection], None], *, backlog: int = 16, accept: bool = True
    ) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections: list[RawConnection] = []
        self.errors: list[BaseException] = []
        self._accept = accept
        self._threads: list[threading.Thread] = []
        self._connected = threading.Condition()

    def __enter__(self) -> Self:
        if self._accept:
            thread = threading.Thread(target=self._serve, daemon=True, name="raw-http")
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        for connection in list(self.connections):
            with contextlib.suppress(OSError):
                connection.sock.close()

    def wait_for_connections(self, count: int, timeout: float = 5) -> bool:
        with self._connected:
            return self._connected.wait_for(lambda: len(self.connections) >= count, timeout)

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # closed
            connection = RawConnection(sock)
            with self._connected:
                self.connections.append(connection)
                self._connected.notify_all()
            thread = threading.Thread(target=self._run, args=(connection,), daemon=True)
            thread.start()

    def _run(self, connection: RawConnection) -> None:
        try:
            self.script(connection)
        except OSError:
            pass  # the client went away: what some tests are about
        except BaseException as error:
            self.errors.append(error)
        finally:
            with contextlib.suppress(OSError):
                connection.sock.close()
