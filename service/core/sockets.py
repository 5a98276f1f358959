"""Sockets under gevent: whether gevent drives this process (`gevent_drives`), and `send_all`,
sendall's contract at a lower cost for small writes."""

from __future__ import annotations

import functools
import socket
from typing import Any

import gevent.monkey


@functools.cache
def gevent_drives() -> bool:
    """Whether gevent drives this process: the server's workers patch the socket module before
    they load the app; tests, the lab and the command-line tools never do."""
    return bool(gevent.monkey.is_module_patched("socket"))


def send_all(sock: socket.socket, data: Any, flags: int = 0) -> None:
    """Send all of `data`, as `sock.sendall` does.

    gevent's sendall asks the kernel for the socket's buffer size before every write (a system
    call, to size its chunks); the proxy's writes (a request, an answer's head and body, a stream's
    events) almost always fit in one `send`, and only what the kernel did not take goes through
    sendall.
    """
    sent = sock.send(data, flags)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:], flags)
