"""Pooled HTTP/1.1 connections to one upstream origin, on gevent sockets: the one adapter over
geventhttpclient, which the rest of the service never imports.

Why geventhttpclient: relaying is the proxy's hot path, and it parses answers in C on gevent's
own sockets (docs/benchmarks.md compares it with urllib3). Only its public API is used: the
pool's `get_socket`/`return_socket`/`release_socket` and `after_connect` hook, and the response's
`read()`, `readline()` and `release()`. `tests/unit/test_http_pool.py` pins the behaviour relied
on (a line is returned as soon as it has arrived, an early close is an error, a connection is
reused only after its answer was read to the end), so an upgrade that changes it fails a test
rather than the relay.

Sockets and pools belong to one gevent hub, that is one OS thread: under the server's
monkey-patching every request shares one pool; a caller using real threads (the accuracy lab's
workers) gets a pool per thread. `OriginPool` hides that.
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Mapping
from typing import Any, TypedDict

import gevent
from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from geventhttpclient.response import HTTPConnectionClosed, HTTPParseError, HTTPSocketPoolResponse
from geventhttpclient.url import URL

_BLOCK_SIZE = 65536


class TransportError(Exception):
    """No complete answer; the subclass says what went wrong, `reason` in words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectTimeout(TransportError):
    """No connection within the connect timeout."""


class ConnectFailed(TransportError):
    """No connection: refused, no route, DNS, a TLS handshake or certificate error."""


class ReadTimeout(TransportError):
    """Connected, but no data within the read timeout."""


class Broken(TransportError):
    """The connection closed or the answer was not HTTP, before the answer was complete."""


def _reason(error: BaseException) -> str:
    text = getattr(error, "strerror", None) or getattr(error, "reason", None) or str(error)
    return str(text)[:200] or type(error).__name__


class _NoDelay:
    def after_connect(self, sock: socket.socket) -> None:
        # Small writes (a stream's chunks, a short answer) go out at once, not after an ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Pool(_NoDelay, ConnectionPool):
    pass


class _TLSPool(_NoDelay, SSLConnectionPool):
    pass


class UpstreamResponse:
    """An answer whose status line and headers have arrived; the body is read on demand."""

    def __init__(self, response: HTTPSocketPoolResponse) -> None:
        self._response = response
        self.status: int = response.status_code
        headers: dict[str, str] = {}
        for name, value in response.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        self.headers: Mapping[str, str] = headers  # lower-case names, repeated fields joined

    def read(self) -> bytes:
        """The whole (rest of the) body."""
        try:
            return self._response.read()
        except (OSError, HTTPParseError) as error:
            raise _transport_error(error) from None

    def read_line(self) -> bytes:
        """The next line of the body, newline included, once it has all arrived; b"" at the end.

        A body that ends without a final newline gives its last bytes as a line too.
        """
        return self.read_until(b"\n")

    def read_until(self, separator: bytes) -> bytes:
        """The body up to and including the next `separator`, once it has all arrived; at the end
        of the body, what is left after the last separator; b"" once everything was read."""
        try:
            piece = self._response.readline(separator)
            # readline gives b"" at the end even when bytes without a separator are left.
            return piece or self._response.read()
        except (OSError, HTTPParseError) as error:
            self.close()
            raise _transport_error(error) from None

    def close(self) -> None:
        """Give the connection back when the answer was read to its end, else close it (which is
        how the upstream learns that nobody is listening any more)."""
        self._response.release()


def _transport_error(error: BaseException) -> TransportError:
    """What a failed send or read means, in words fit for the caller's error message."""
    if isinstance(error, TimeoutError):
        return ReadTimeout("no data within the read timeout")
    if isinstance(error, HTTPConnectionClosed):
        return Broken("it closed the connection without an answer")
    if isinstance(error, HTTPParseError):
        # The parser's own text is a tuple of internals; "Incomplete response." is its one plain one.
        text = str(error)
        return Broken("the answer ended early" if "Incomplete" in text else "not an HTTP answer")
    return Broken(_reason(error))


class _PoolOptions(TypedDict):
    size: int
    connection_timeout: float
    network_timeout: float


class OriginPool:
    """Keep-alive connections to the origin of `base_url`; `request()` sends one request."""

    def __init__(self, base_url: str, *, connect_timeout: float, read_timeout: float, size: int) -> None:
        url = URL(base_url)
        self.https = url.scheme == "https"
        default_port = 443 if self.https else 80
        self.host, self.port = url.host, url.port or default_port  # URL gives http(s)'s default port
        host = f"[{url.host}]" if ":" in url.host else url.host
        self._host_header = host if self.port == default_port else f"{host}:{self.port}"
        self._options: _PoolOptions = {
            "size": size,
            "connection_timeout": connect_timeout,
            "network_timeout": read_timeout,
        }
        # gevent's hub (untyped) -> its pool
        self._pools: weakref.WeakKeyDictionary[Any, ConnectionPool] = weakref.WeakKeyDictionary()

    def _pool(self) -> ConnectionPool:
        hub = gevent.get_hub()  # one per OS thread; gevent sockets cannot cross between them
        pool = self._pools.get(hub)
        if pool is None:
            if self.https:
                # ca_certs None: the system's trust store (SSL_CERT_FILE honoured), not certifi's.
                tls = {"ca_certs": None}
                pool = _TLSPool(self.host, self.port, self.host, self.port, ssl_options=tls, **self._options)
            else:
                pool = _Pool(self.host, self.port, self.host, self.port, **self._options)
            self._pools[hub] = pool
        return pool

    def request(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes | None
    ) -> UpstreamResponse:
        """Send `method target` with `headers` (and `body`); return once the answer's head arrived.

        Raises TransportError. Header values must not contain CR or LF (the caller checks).
        """
        lines = [f"{method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        # One write for head and body: one packet for a small request, and no wait on Nagle.
        data = "".join(lines).encode("latin-1") + (body or b"")
        pool = self._pool()
        try:
            sock = pool.get_socket()  # a pooled connection, or a new one (all it can fail on)
        except TimeoutError as error:
            raise ConnectTimeout(_reason(error)) from None
        except OSError as error:  # refused, no route, DNS, TLS handshake and certificate errors
            raise ConnectFailed(_reason(error)) from None
        try:
            sock.sendall(data)
        except OSError as error:
            pool.release_socket(sock)
            raise _transport_error(error) from None
        except BaseException:
            pool.release_socket(sock)
            raise
        try:
            # The response hands the socket back to the pool (or closes it) itself.
            response = HTTPSocketPoolResponse(sock, pool, block_size=_BLOCK_SIZE, method=method)
        except (OSError, HTTPParseError) as error:
            raise _transport_error(error) from None
        return UpstreamResponse(response)
