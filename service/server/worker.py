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
  first, and nothing is shed). Shedding is expected, not an error: no traceback, and one WARNING
  a minute at most, counting the connections closed since the last one;
- a request to an open route (`GET /`, `/metrics`: no key needed) that carries a body is answered
  without reading the body, with `Connection: close`, and its connection closed: nobody can hold a
  connection busy by trickling a body to the health check, and the unread bytes are never taken
  for a next request;
- JSON errors, with a request id, for requests the HTTP parser refuses (a bad Content-Length, a
  NUL or bare CR in a header, a head or URL too large), where gunicorn would answer an HTML page;
- at shutdown, before the master's kill at the end of the graceful timeout: requests still waiting
  on their provider are answered 503 `server_shutting_down` (`service.core.shutdown`), streams still
  waiting are ended with an error event (`service.gateway.sse.cut_streams`), and idle keep-alive
  connections are closed, so every client learns its request was cut, every request still writes
  its access line and usage record, and the worker has exited when the master would kill it.
"""

from __future__ import annotations

import contextlib
import socket
import time
from types import FrameType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import gevent
from gunicorn.http import errors as http_errors
from gunicorn.workers.ggevent import GeventWorker

from service.config.settings import load_settings
from service.server.answer_socket import AnswerSocket

if TYPE_CHECKING:
    from gunicorn.http.message import Request

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
_REPORT_EVERY = 60.0  # seconds between two WARNINGs counting shed connections, at least


class ShedConnection(gevent.GreenletExit):
    """Thrown into an idle connection's greenlet to close it. Gunicorn hands it to `handle_error`,
    which knows it is expected. (Shutting the socket down instead makes gevent cancel the pending
    read with EBADF, which gunicorn logs as an ERROR with a traceback.) A GreenletExit, so that
    wherever it lands nothing reports it as a crash."""


class ShedReport:
    """Counts shed connections, for one WARNING a minute at most: the first shedding is reported at
    once, any later one within the minute is added to the next report, when the minute is up."""

    def __init__(self, every: float = _REPORT_EVERY) -> None:
        self.every = every
        self.closed = 0  # since the last report
        self.most_in_use = 0
        self.reported_at: float | None = None

    def add(self, closed: int, in_use: int) -> None:
        self.closed += closed
        self.most_in_use = max(self.most_in_use, in_use)

    def due(self, now: float) -> tuple[int, int] | None:
        """(connections closed, most in use) to report now, or None; counts start again from zero."""
        if not self.closed or (self.reported_at is not None and now - self.reported_at < self.every):
            return None
        report = (self.closed, self.most_in_use)
        self.closed = self.most_in_use = 0
        self.reported_at = now
        return report


class _Connection:
    __slots__ = ("busy", "requests", "since")

    def __init__(self) -> None:
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
        self._shed_report = ShedReport()
        # Imported here, in the worker: the master loads this module and none of the app.
        from service.governance.open_routes import is_open_route

        self._is_open_route = is_open_route
        super().init_process()

    # --- connections -----------------------------------------------------------------------

    def handle(self, listener: socket.socket, client: socket.socket, addr: Any) -> None:
        if self._shedder is None:
            self._shedder = gevent.spawn(self._shed_idle_connections)
        current = gevent.getcurrent()
        self.connections[current] = _Connection()
        try:
            super().handle(listener, client, addr)
        finally:
            self.connections.pop(current, None)

    def handle_request(self, listener_name: str, req: Request, sock: socket.socket, addr: Any) -> bool:
        if self._is_open_route(req.method, unquote(req.path)) and _has_body(req):
            # The app never reads an open route's body (service.edge.pipeline). Only the server's
            # request can make the answer say `Connection: close` and end the connection after it
            # (instead of reading the rest of the body to find the next request), so the worker
            # marks it here, by the rule the pipeline follows.
            req.force_close()
        connection = self.connections.get(gevent.getcurrent())
        if connection is not None:
            connection.busy = True
        answer_sock = AnswerSocket(sock)  # a whole answer's head and body in one send
        try:
            keep_alive: bool = super().handle_request(listener_name, req, answer_sock, addr)
            return keep_alive
        finally:
            with contextlib.suppress(OSError):
                answer_sock.flush()  # before the connection is read again or closed
            if connection is not None:
                connection.busy = False
                connection.requests += 1
                connection.since = time.monotonic()

    def timeout_ctx(self) -> gevent.Timeout:
        """How long to wait for the next request head: the keep-alive time, except on a new
        connection, which must send its first request head within AIPROXY_HEADER_TIMEOUT."""
        connection = self.connections.get(gevent.getcurrent())
        first = connection is None or connection.requests == 0
        return gevent.Timeout(self.header_timeout if first else self.keepalive, False)

    def _shed_idle_connections(self) -> None:
        capacity = self.worker_connections
        low_water = max(1, int(capacity * _LOW_WATER))
        target = max(low_water, int(capacity * _SHED_TO))
        loop = gevent.get_hub().loop
        while self.alive:
            gevent.sleep(_SHED_EVERY)
            free = capacity - len(self.connections)
            if free < low_water:
                waiting = sorted(
                    (item for item in self.connections.items() if not item[1].busy),
                    key=lambda item: item[1].since,
                )
                shed = waiting[: target - free]
                for greenlet, connection in shed:
                    loop.run_callback(self._close_idle, greenlet, connection)
                self._shed_report.add(len(shed), capacity - free)
            report = self._shed_report.due(time.monotonic())
            if report is not None:
                self.log.warning(
                    "Closed %d idle connections since the last such line, as capacity ran short "
                    "(up to %d of %d connections in use)",
                    *report,
                    capacity,
                )

    def _close_idle(self, greenlet: gevent.Greenlet, connection: _Connection) -> None:
        # Run by the hub, where the connection's greenlet is waiting; unless it has started a
        # request (or ended) since the shedder chose it, it ends: gunicorn's handler closes the socket.
        if self.connections.get(greenlet) is connection and not connection.busy:
            greenlet.throw(ShedConnection())

    # --- errors the HTTP parser finds --------------------------------------------------------

    def handle_error(self, req: Request | None, client: socket.socket, addr: Any, exc: BaseException) -> None:
        if isinstance(exc, ShedConnection):
            return  # closed on purpose (gunicorn's handler closes the socket), counted in the WARNING
        # Imported here, in the worker: the master loads this module and none of the app.
        from service.core.errors import SERVER_ERROR_MESSAGE, error_body
        from service.core.request_state import new_id
        from service.core.responses import json_bytes

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

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._stopping is None:
            # Out of the signal handler, as gunicorn's own gevent worker does with its signals.
            grace = self.cfg.graceful_timeout
            self._stopping = gevent.spawn_later(max(0.0, grace - min(_CUT_MARGIN, grace / 2)), self._cut)

    def _cut(self) -> None:
        """End what is left in flight, so it is answered before the master kills the worker."""
        from service.core import shutdown
        from service.gateway import sse

        shutdown.cut_provider_calls()
        sse.cut_streams()
        # Idle keep-alive connections would hold the worker until it is killed: they are closed as
        # shedding closes them. Requests in flight keep theirs.
        loop = gevent.get_hub().loop
        for greenlet, connection in list(self.connections.items()):
            if not connection.busy:
                loop.run_callback(self._close_idle, greenlet, connection)


def _has_body(req: Request) -> bool:
    """Whether the request says a body follows (gunicorn has checked its framing headers)."""
    return any(
        name == "TRANSFER-ENCODING" or (name == "CONTENT-LENGTH" and value.strip() != "0")
        for name, value in req.headers
    )
