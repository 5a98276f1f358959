"""What every request goes through, whichever part of the app serves it.

`RequestPipeline` is the WSGI app the server calls (Flask's test client too: it is installed as
the Flask app's `wsgi_app`). For each request it:

1. starts the request's state (`service.core.request_state`): its id (`X-Request-Id` when the client
   sent a short, plain one, else a new one), method, path and start time;
2. authenticates the client (`service.governance.auth.ClientGate`);
3. reads the body whole (except on the open routes, `GET /` and `/metrics`, whose bodies are never
   read), within AIPROXY_MAX_BODY_BYTES (413 beyond) and AIPROXY_BODY_TIMEOUT
   (408 when the client stops sending), and for the OpenAI-compatible routes parses it (400
   naming what is wrong);
4. admits the request against the client's limits (`service.governance.limits`), with an estimate of the
   tokens it may use: the one call to the limits store before the provider call (not for the
   `unmetered_paths`, which read the limits rather than use them: `GET /v1/limits`);
5. hands the request to its route: the OpenAI-compatible POST routes (`service.edge.routes.openai_api`,
   plain WSGI, the hot path) or else Flask;
6. answers any `ProxyError` through `service.core.errors.error_answer`; any other exception is logged
   (so reported to Honeybadger) and answered with a JSON 500;
7. adds `X-Request-Id` (and the client's limit headers) to the answer, and sends its headers
   through `service.core.escaping.sendable_headers` (a value no header can carry is escaped, never
   refused by the server; should the server refuse them all the same, the client gets the JSON
   500 instead, with its access line); settles the request with the limits (actual tokens and
   cost: the one call after the provider call) once the answer has gone out, or before a whole
   answer is sent when settling can change the client's next admission
   (`Admission.settles_first`); and once the answer has gone out writes the access line, which is
   also the request's metrics record.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from service.config.prices import PriceTable
from service.core import request_state
from service.core.errors import SERVER_ERROR_MESSAGE, ProxyError, RequestRejected, error_answer
from service.core.escaping import sendable_headers
from service.core.request_state import RequestState
from service.core.responses import Closing, JsonRoute
from service.edge import bodies
from service.governance.auth import ClientGate, is_open_route
from service.governance.limits import Limiter
from service.ops.metrics import RequestMetrics
from service.ops.observability import REQUEST_ID_HEADER, request_id_from

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment
    from _typeshed.wsgi import WSGIApplication as WSGIApp

log = logging.getLogger(__name__)


class RequestPipeline:
    """The WSGI app the server calls: the steps above around the JSON routes and Flask's `wsgi_app`."""

    def __init__(
        self,
        flask_app: WSGIApp,
        *,
        gate: ClientGate,
        limiter: Limiter,
        routes: Mapping[str, JsonRoute],
        max_body: int,
        body_timeout: float,
        output_estimate: int,
        metrics: RequestMetrics,
        prices: PriceTable | None = None,
        generating_paths: frozenset[str] = frozenset(),
        unmetered_paths: frozenset[str] = frozenset(),
    ) -> None:
        self._flask = flask_app
        self._gate = gate
        self._limiter = limiter
        self._routes = routes
        self._max_body = max_body
        self._body_timeout = body_timeout
        self._output_estimate = output_estimate
        self._metrics = metrics
        self._prices = prices
        self._generating = generating_paths  # Flask routes that ask a model for output
        self._unmetered = unmetered_paths  # Flask routes not counted against the client's limits

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        # As Flask shows it: WSGI servers hand the path over as Latin-1; clients send UTF-8.
        path = (environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
        state = RequestState(request_id_from(environ.get("HTTP_X_REQUEST_ID", "")), method, path)
        state.client_socket = environ.get("gunicorn.socket")  # streams watch it (service.gateway.sse)
        state.prices = self._prices
        token = request_state.begin(state)
        extra_headers: list[tuple[str, str]] = [(REQUEST_ID_HEADER, state.id)]

        streams = False
        refused: Any = None  # why the server refused the headers of a first answer, if it did

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal streams, refused
            state.status = int(status_line.partition(" ")[0])
            streams = any(
                n.lower() == "content-type" and v.startswith("text/event-stream") for n, v in headers
            )
            if state.admission is not None:
                # The client's own limits: an upstream's rate-limit headers would describe the proxy's.
                headers = [h for h in headers if not h[0].lower().startswith("x-ratelimit-")]
            try:
                # The one place headers go out: a value no header can carry (a model name with a
                # line break, a snowman) is escaped rather than refused by the server.
                sendable = sendable_headers([*headers, *extra_headers])
                # After a refusal, the error answer replaces the refused one (PEP 3333's exc_info),
                # instead of failing again with "headers already set".
                return start_response(status_line, sendable, exc_info or refused)
            except Exception:
                refused = sys.exc_info()
                raise

        try:
            try:
                answer = self._serve(environ, state, method, path, extra_headers)(environ, start)
            except ProxyError as error:
                answer = error_answer(error)(environ, start)
            except Exception:
                log.exception("Exception on %s [%s]", path, method)
                answer = error_answer(ProxyError(SERVER_ERROR_MESSAGE))(environ, start)
        except BaseException:
            self._settle(state)
            request_state.end(token)
            raise

        def finish() -> None:
            try:
                self._metrics.record(state)
            finally:
                request_state.end(token)

        if state.admission is not None and state.admission.settles_first and not streams:
            # Settled before the client has the answer, as settling can change its next admission
            # (a budget, its last slot, its last tokens): that request, wherever it lands, finds
            # this one's slot free and its tokens and cost counted (a budget is overshot by at most
            # one request). The answer is in memory already; with a shared store the settle waits
            # for the store's reply (service.governance.shared_limits).
            whole = Closing(answer, lambda: self._settle(state))
            try:
                body = b"".join(whole)
                whole.close()
            except BaseException:
                Closing(whole, finish).close()  # settled all the same, and the access line written
                raise
            return Closing([body], finish)
        # Once the answer has gone out (the server closes it then): the client does not wait for
        # the settling or the access line, its duration includes sending, and a stream holds its
        # in-flight slot to the end.
        return Closing(answer, lambda: self._settle(state), finish)

    def _serve(
        self,
        environ: WSGIEnvironment,
        state: RequestState,
        method: str,
        path: str,
        extra_headers: list[tuple[str, str]],
    ) -> WSGIApp:
        client = self._gate.authenticate(method, path, environ.get("HTTP_AUTHORIZATION", ""))
        if is_open_route(method, path):
            # Its body is never read: anyone may send one without a key, and a connection reading
            # a trickled body is busy, so it could never be shed. The worker closes the connection
            # after the answer instead of reading what is left (service.server.worker).
            return self._flask
        route = self._routes.get(path)
        if route is not None and method != "POST":
            raise RequestRejected(
                "The method is not allowed for the requested URL.", status=405, headers={"Allow": "POST"}
            )
        raw = bodies.read_body(environ, self._max_body, self._body_timeout)
        body = bodies.json_object(raw) if route is not None else None
        if client is not None:
            state.client = client.name  # from here on, log lines name the client
            state.limits = client.limits
        if client is not None and path not in self._unmetered:
            generates = route.generates if route is not None else path in self._generating
            estimate = bodies.estimate_tokens(body, len(raw), self._output_estimate if generates else 0)
            state.admission = self._limiter.admit(client.name, client.limits, estimate)
            extra_headers.extend(state.admission.headers())
        if route is None:
            return self._flask
        assert body is not None  # parsed above, as for every JSON route
        return route(body, raw, environ)

    def _settle(self, state: RequestState) -> None:
        admission = state.admission  # left on the state: the metrics record reads the budget in it
        if admission is not None:
            self._limiter.settle(admission, state.used)
