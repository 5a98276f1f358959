"""Pooled HTTP/1.1 connections to one upstream origin, on gevent sockets, and the answers read
from them: the one place the service speaks HTTP to an upstream.

The connections come from geventhttpclient's pool (its public `get_socket`, `return_socket`,
`release_socket` and `after_connect` hook: connect and TLS timeouts, the system trust store, a
stale idle connection replaced). The answers are read here, on the socket itself, and parsed by
httptools (llhttp, in C): each `recv` hands whatever has arrived to the parser, so a caller can
take "what is available now" (`read_available`, one upstream read: a stream relays every event
that came in it at once) as well as the whole body (`read`). Chunked, Content-Length and
until-close bodies are read; a body cut short is an error at once; a connection goes back to the
pool only after its answer was read to its end, and is closed when the answer is abandoned (which
is how an upstream learns that nobody listens any more). `tests/unit/test_http_pool.py` pins
each of these.

Sockets and pools belong to one gevent hub, that is one OS thread: under the server's
monkey-patching every request shares one pool; a caller using real threads (the accuracy lab's
workers) gets a pool per thread. `OriginPool` hides that.
"""

from __future__ import annotations

import socket
import weakref
from collections.abc import Iterable, Mapping
from typing import Any, TypedDict

import gevent
from geventhttpclient.connectionpool import ConnectionPool, SSLConnectionPool
from geventhttpclient.url import URL
from httptools import HttpParserError, HttpResponseParser

from service.core.sockets import send_all

_BLOCK_SIZE = 65536
# Answers without a body whatever their headers say (RFC 9110): llhttp knows these itself.
_NO_BODY = frozenset({204, 304})


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
    """An answer whose status line and headers have arrived; the body is read on demand.

    It is also the parser's protocol: the `on_*` methods are httptools' callbacks.
    """

    def __init__(self, sock: socket.socket, pool: ConnectionPool, method: str) -> None:
        self._sock: socket.socket | None = sock  # None once handed back or closed
        self._pool = pool
        self._parser = HttpResponseParser(self)
        self._body: list[bytes] = []
        self._fields: dict[str, str] = {}
        self._received = False
        self._head_done = False
        self._complete = False
        self._until_close = False
        self._reusable = False
        self.status = 0
        self.headers: Mapping[str, str] = self._fields  # lower-case names, repeated fields joined
        while not self._head_done:
            self._receive()
        if method == "HEAD" and not self._complete:
            # llhttp would wait for the body the headers announce; a HEAD answer has none.
            self._complete = True
            self._hand_back(reuse=False)

    # --- httptools' callbacks --------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        fields = self._fields
        fields[key] = f"{fields[key]}, {text}" if key in fields else text

    def on_headers_complete(self) -> None:
        self._head_done = True
        self.status = status = self._parser.get_status_code()
        fields = self._fields
        framed = "content-length" in fields or "chunked" in fields.get("transfer-encoding", "").lower()
        # No length and not chunked: the body runs until the upstream closes the connection.
        self._until_close = not framed and status not in _NO_BODY and status >= 200
        self._reusable = (
            framed
            and self._parser.get_http_version() == "1.1"
            and "close" not in fields.get("connection", "").lower()
        )

    def on_body(self, body: bytes) -> None:
        if self._complete:  # a second answer nobody asked for, in the same read: not this one's
            self._reusable = False
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete = True

    # --- reading ---------------------------------------------------------------------------------

    def read(self) -> bytes:
        """The whole (rest of the) body."""
        while not self._complete:
            self._receive()
        return self._take()

    def read_available(self) -> bytes:
        """The body bytes that have arrived and were not read yet, waiting for the next upstream
        read when there are none; b"" once the body was read to its end."""
        while not self._body and not self._complete:
            self._receive()
        return self._take()

    def read_block(self, size: int) -> bytes:
        """The next `size` bytes of the body once they have arrived (fewer at its end); b"" once
        everything was read. How a binary answer (speech, a file) is relayed as it arrives."""
        while sum(map(len, self._body)) < size and not self._complete:
            self._receive()
        data = self._take()
        if len(data) > size:
            data, rest = data[:size], data[size:]
            self._body.append(rest)
        return data

    def _take(self) -> bytes:
        body = self._body
        if not body:
            return b""
        data = body[0] if len(body) == 1 else b"".join(body)
        body.clear()
        return data

    def _receive(self) -> None:
        """One read from the socket, fed to the parser. Raises TransportError."""
        sock = self._sock
        if sock is None:
            raise Broken("the answer was closed before its end")
        try:
            data = sock.recv(_BLOCK_SIZE)
        except OSError as error:
            self._hand_back(reuse=False)
            raise _transport_error(error) from None
        except BaseException:  # interrupted (a client gone, the server stopping): nothing to reuse
            self._hand_back(reuse=False)
            raise
        if not data:
            self._hand_back(reuse=False)
            if self._until_close:
                self._complete = True
                return
            if not self._received:
                raise Broken("it closed the connection without an answer")
            raise Broken("the answer ended early")
        self._received = True
        try:
            self._parser.feed_data(data)
        except HttpParserError:
            # Bytes after a complete answer are the upstream's mistake, not this answer's.
            self._reusable = False
            if not self._complete:
                self._hand_back(reuse=False)
                raise Broken("not an HTTP answer") from None
        if self._complete:
            self._hand_back(reuse=self._reusable)

    def _hand_back(self, *, reuse: bool) -> None:
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if reuse:
            self._pool.return_socket(sock)
        else:
            self._pool.release_socket(sock)

    def close(self) -> None:
        """Give the connection back when the answer was read to its end, else close it (which is
        how the upstream learns that nobody is listening any more)."""
        self._hand_back(reuse=self._complete and self._reusable)


def _transport_error(error: BaseException) -> TransportError:
    """What a failed send or read means, in words fit for the caller's error message."""
    if isinstance(error, TimeoutError):
        return ReadTimeout("no data within the read timeout")
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
        # The request line's fixed part, encoded once.
        host_header = host if self.port == default_port else f"{host}:{self.port}"
        self._host_line = f" HTTP/1.1\r\nHost: {host_header}\r\n".encode("latin-1")
        self._options: _PoolOptions = {
            "size": size,
            "connection_timeout": connect_timeout,
            "network_timeout": read_timeout,
        }
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
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | Iterable[bytes] | None,
        *,
        length: int | None = None,
    ) -> UpstreamResponse:
        """Send `method target` with `headers` (and `body`); return once the answer's head arrived.

        `body` may be an iterable of chunks (an upload relayed as it arrives: `send_chunks`), sent
        with `length` as its Content-Length when known, else chunked. Raises TransportError; what
        the chunks raise (the client's upload failing) is raised as it is, the connection closed.
        Header values must not contain CR or LF (the caller checks).
        """
        lines = [f"{name}: {value}\r\n" for name, value in headers.items()]
        chunks = None if body is None or isinstance(body, bytes) else body
        if chunks is not None:
            lines.append(_body_framing(length))
        elif isinstance(body, bytes):
            lines.append(f"Content-Length: {len(body)}\r\n")
        lines.append("\r\n")
        # One write for head and body: one packet for a small request, and no wait on Nagle.
        head = f"{method} {target}".encode("latin-1") + self._host_line + "".join(lines).encode("latin-1")
        data = head + body if isinstance(body, bytes) and body else head
        pool = self._pool()
        try:
            sock = pool.get_socket()  # a pooled connection, or a new one (all it can fail on)
        except TimeoutError as error:
            raise ConnectTimeout(_reason(error)) from None
        except OSError as error:  # refused, no route, DNS, TLS handshake and certificate errors
            raise ConnectFailed(_reason(error)) from None
        try:
            send_all(sock, data)
            if chunks is not None:
                send_chunks(sock, chunks, chunked=length is None)
        except OSError as error:
            pool.release_socket(sock)
            raise _transport_error(error) from None
        except BaseException:
            pool.release_socket(sock)
            raise
        # The answer hands the socket back to the pool (or closes it) itself.
        return UpstreamResponse(sock, pool, method)


# --- request bodies sent as they arrive (uploads) ---------------------------------------------------


def _body_framing(length: int | None) -> str:
    return f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"


def send_chunks(sock: socket.socket, chunks: Iterable[bytes], *, chunked: bool) -> None:
    """Write `chunks` to `sock` one by one (nothing more than a chunk held at once), in HTTP/1.1
    chunked framing when `chunked` (the length is not known up front)."""
    for chunk in chunks:
        if not chunk:
            continue
        if chunked:
            sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            sock.sendall(chunk)
    if chunked:
        sock.sendall(b"0\r\n\r\n")
