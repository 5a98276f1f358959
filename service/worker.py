"""The server's worker: gunicorn's gevent worker, made to hold up against hostile connections.

Gunicorn's worker class is its public extension point (`worker_class`); this one keeps everything
of the gevent worker and adds:

- a time limit on a new connection's request head (AIPROXY_HEADER_TIMEOUT): a client that opens
  a connection and sends its headers slowly, or never, is disconnected instead of holding one of
  the worker's connections for the whole keep-alive time;
- shedding idle connections when capacity runs short: when fewer than a tenth of the worker's
  connections are free, those waiting longest for their next request are closed until half are
  free, so a flood of idle or half-sent connections never leaves the worker unable to accept the
  health check (in normal operation the load balancer's idle timeout closes idle connections
  first, and nothing is shed);
- JSON errors, with a request id, for requests the HTTP parser refuses (a bad Content-Length, a
  NUL or bare CR in a header, a head or URL too large), where gunicorn would answer an HTML page;
- at shutdown, before the master's kill at the end of the graceful timeout: requests still waiting
  on their provider are answered 503 `server_shutting_down` (`service.shutdown`), streams still
  waiting are ended with an error event (`service.sse.cut_streams`), and idle keep-alive
  connections are closed, so every client learns its request was cut, every request still writes
  its access line and usage record, and the worker has exited when the master would kill it.
"""

from __future__ import annotations

import contextlib
import socket
import time

import gevent
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from service.settings import load_settings

# Statuses for what the HTTP parser refuses (anything else it refuses is a 400).
_STATUSES = (
    (http_errors.LimitRequestLine, 414, "The request line (method and URL) is too long."),
    (http_errors.LimitRequestHeaders, 431, "The request's headers are too many or too large."),
    (http_errors.UnsupportedTransferCoding, 501, "The request's Transfer-Encoding is not supported."),
    (http_errors.ExpectationFailed, 417, "The request's Expect header cannot be met."),
    (http_errors.ForbiddenProxyRequest, 403, "The request's proxy protocol header is not allowed."),
)
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
}
# Shedding starts when fewer than this share of a worker's connections are free, and closes
# waiting connections until this much is free: a flood is drained in a few rounds.
_LOW_WATER = 0.1
_SHED_TO = 0.5
_SHED_EVERY = 0.25  # seconds between checks
# At shutdown, what is still in flight is cut this long before the master's kill (at most half the
# graceful timeout): gunicorn's worker looks once a second whether its requests are done, so the
# answers must have gone out more than a second before the kill for the worker to exit on its own.
_CUT_MARGIN = 2.0


class _Connection:
    __slots__ = ("busy", "requests", "since", "socket")

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock
        self.busy = False
        self.requests = 0
        self.since = time.monotonic()  # when it started waiting for its next request


class ProxyWorker(GeventWorker):
    def init_process(self) -> None:
        settings = load_settings()
        self.header_timeout = settings.header_timeout
        self.keepalive = settings.keepalive  # gunicorn's own setting; read here once, not per request
        self.connections: dict[gevent.Greenlet, _Connection] = {}
        self._shedder: gevent.Greenlet | None = None
        self._stopping: gevent.Greenlet | None = None  # the cut at the end of the graceful time
        super().init_process()

    # --- connections -----------------------------------------------------------------------

    def handle(self, listener, client, addr) -> None:
        if self._shedder is None:
            self._shedder = gevent.spawn(self._shed_idle_connections)
        current = gevent.getcurrent()
        self.connections[current] = _Connection(client)
        try:
            super().handle(listener, client, addr)
        finally:
            self.connections.pop(current, None)

    def handle_request(self, listener_name, req, sock, addr):
        connection = self.connections.get(gevent.getcurrent())
        if connection is not None:
            connection.busy = True
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            if connection is not None:
                connection.busy = False
                connection.requests += 1
                connection.since = time.monotonic()

    def timeout_ctx(self):
        """How long to wait for the next request head: the keep-alive time, except on a new
        connection, which must send its first request head within AIPROXY_HEADER_TIMEOUT."""
        connection = self.connections.get(gevent.getcurrent())
        first = connection is None or connection.requests == 0
        return gevent.Timeout(self.header_timeout if first else self.keepalive, False)

    def _shed_idle_connections(self) -> None:
        capacity = self.worker_connections
        low_water = max(1, int(capacity * _LOW_WATER))
        target = max(low_water, int(capacity * _SHED_TO))
        while self.alive:
            gevent.sleep(_SHED_EVERY)
            free = capacity - len(self.connections)
            if free >= low_water:
                continue
            waiting = sorted((c for c in self.connections.values() if not c.busy), key=lambda c: c.since)
            shed = waiting[: target - free]
            for connection in shed:
                with contextlib.suppress(OSError):
                    connection.socket.shutdown(socket.SHUT_RDWR)  # its reader sees the end and closes it
            if shed:
                self.log.warning(
                    "Closed %d idle connections: %d of %d connections were in use",
                    len(shed),
                    capacity - free,
                    capacity,
                )

    # --- errors the HTTP parser finds --------------------------------------------------------

    def handle_error(self, req, client, addr, exc) -> None:
        # Imported here, in the worker: the master loads this module and none of the app.
        from service.answers import json_bytes
        from service.errors import SERVER_ERROR_MESSAGE, error_body
        from service.request_state import new_id

        status, message = 500, SERVER_ERROR_MESSAGE
        if isinstance(exc, http_errors.ParseException | http_errors.NoMoreData):
            status, message = 400, "The request is not valid HTTP."
            for kind, kind_status, kind_message in _STATUSES:
                if isinstance(exc, kind):
                    status, message = kind_status, kind_message
            self.log.info(
                "Refused a request the HTTP parser could not read (%s): %s", status, type(exc).__name__
            )
        else:
            self.log.exception("Error handling request")
        kind = "invalid_request_error" if status < 500 else "server_error"
        body = json_bytes(error_body(status, message, type=kind))
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Request-Id: {new_id()}\r\n\r\n"
        )
        with contextlib.suppress(OSError):
            client.sendall(head.encode("latin-1") + body)

    # --- shutdown ------------------------------------------------------------------------------

    def handle_exit(self, sig, frame) -> None:
        super().handle_exit(sig, frame)
        if self._stopping is None:
            # Out of the signal handler, as gunicorn's own gevent worker does with its signals.
            grace = self.cfg.graceful_timeout
            self._stopping = gevent.spawn_later(max(0.0, grace - min(_CUT_MARGIN, grace / 2)), self._cut)

    def _cut(self) -> None:
        """End what is left in flight, so it is answered before the master kills the worker."""
        from service import shutdown, sse

        shutdown.cut_provider_calls()
        sse.cut_streams()
        # Idle keep-alive connections would hold the worker until it is killed: their readers see
        # the end and close them. Requests in flight keep theirs.
        for connection in list(self.connections.values()):
            if not connection.busy:
                _hang_up(connection.socket)


def _hang_up(sock: socket.socket) -> None:
    """Shut `sock` down, so that the greenlet reading it sees the end of the stream and closes it.
    Through a duplicate: gevent's shutdown also ends a wait on the socket itself with EBADF, which
    gunicorn would log as an ERROR with a traceback."""
    with contextlib.suppress(OSError), sock.dup() as twin:
        twin.shutdown(socket.SHUT_RDWR)
