"""What every request goes through, whichever part of the app serves it.

`RequestPipeline` is the WSGI app the server calls (Flask's test client too: it is installed as
the Flask app's `wsgi_app`). For each request it:

1. starts the request's state (`service.core.request_state`): its id (`X-Request-Id` when the client
   sent a short, plain one, else a new one), method, path and start time;
2. answers a browser's CORS preflight for a listed origin (`service.edge.cors`), then authenticates
   the client and, when the request names one, its end user (`service.governance.auth.ClientGate`:
   a client key, or an end-user token), refusing a model the caller may not use (403);
3. reads the body whole (except on the open routes, `GET /` and `/metrics`, whose bodies are never
   read), within AIPROXY_MAX_BODY_BYTES (413 beyond) and AIPROXY_BODY_TIMEOUT
   (408 when the client stops sending), and for the OpenAI-compatible routes parses it (400
   naming what is wrong); an upload route's body (`JsonRoute.streams_body`: audio, image edits,
   files) is not read here but handed to the route unread (`bodies.UploadInput`, bounded by
   AIPROXY_MAX_UPLOAD_BYTES and the same timeout), which sends it on as it arrives;
4. admits the request against the client's limits (`service.governance.limits`), with an estimate of the
   tokens it may use: the one call to the limits store before the provider call (not for the
   `unmetered_paths`, which read the limits rather than use them: `GET /v1/limits`);
5. hands the request to its route: the OpenAI-compatible POST routes (`service.edge.routes.openai_api`,
   plain WSGI, the hot path) or else Flask;
6. answers any `ProxyError` through `service.core.errors.error_answer`; any other exception is logged
   (so reported to Honeybadger) and answered with a JSON 500;
7. adds `X-Request-Id` (and the client's limit headers, and a listed origin's CORS headers) to the
   answer, signs it when asked (`service.edge.signing`), and sends its headers
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
from service.edge import bodies, cors, region
from service.edge.signing import SIGN_HEADER, AnswerSigner
from service.governance.auth import ClientGate
from service.governance.limits import Limiter
from service.governance.open_routes import is_open_route
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
        signer: AnswerSigner | None = None,
        region_header: str | None = None,
        max_upload: int = 25 * 1024 * 1024,
    ) -> None:
        self._flask = flask_app
        self._gate = gate
        self._limiter = limiter
        self._routes = routes
        self._max_body = max_body
        self._max_upload = max_upload  # the upload routes' bodies (`JsonRoute.streams_body`)
        self._body_timeout = body_timeout
        self._output_estimate = output_estimate
        self._metrics = metrics
        self._prices = prices
        self._generating = generating_paths  # Flask routes that ask a model for output
        self._unmetered = unmetered_paths  # Flask routes not counted against the client's limits
        self._signer = signer
        self._region_key = region.environ_key(region_header)  # AIPROXY_REGION_HEADER, if set

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        # As Flask shows it: WSGI servers hand the path over as Latin-1; clients send UTF-8.
        path = (environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
        state = RequestState(request_id_from(environ.get("HTTP_X_REQUEST_ID", "")), method, path)
        state.client_socket = environ.get("gunicorn.socket")  # streams watch it (service.gateway.sse)
        state.prices = self._prices
        if self._region_key is not None:
            state.region = region.region_of(environ.get(self._region_key))
        token = request_state.begin(state)
        extra_headers: list[tuple[str, str]] = [(REQUEST_ID_HEADER, state.id)]

        streams = False
        refused: Any = None  # why the server refused the headers of a first answer, if it did

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal streams, refused
            state.status = int(status_line.partition(" ")[0])
            # Sent as it arrives: events, or a body of no known length (speech, a file's content).
            names = {n.lower(): v for n, v in headers}
            streams = names.get("content-type", "").startswith("text/event-stream") or (
                "content-length" not in names and state.status not in (204, 304)
            )
            # The server may send the head with the first body bytes, in one write (gunicorn writes
            # it just before them anyway: service.server.answer_socket).
            hold_head = getattr(environ.get("gunicorn.socket"), "hold_head", None)
            if hold_head is not None:
                hold_head()
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
        origin = environ.get("HTTP_ORIGIN")
        if origin:
            listed = self._listed_origins()
            if cors.is_preflight(method, path, environ):
                return cors.preflight(origin, listed)
            if cors.allowed_origin(origin, listed):  # so a browser can read even a refusal
                extra_headers.extend(cors.answer_headers(origin))
        client, end_user = self._gate.caller(method, path, environ)
        if origin and client is not None and origin.lower() not in client.access.origins:
            raise cors.origin_refused()  # a token whose client does not list this origin
        if is_open_route(method, path):
            # Its body is never read: anyone may send one without a key, and a connection reading
            # a trickled body is busy, so it could never be shed. The worker closes the connection
            # after the answer instead of reading what is left (service.server.worker).
            return self._flask
        route = self._routes.get(path)
        if route is not None and method != "POST":
            if not route.other_methods_in_flask:
                raise RequestRejected(
                    "The method is not allowed for the requested URL.", status=405, headers={"Allow": "POST"}
                )
            route = None
        body: dict[str, Any] | None
        if route is not None and route.streams_body:
            # An upload is never read here: the route sends it on as it arrives, after admission.
            raw, body = b"", {}
            environ[bodies.UPLOAD] = bodies.UploadInput(environ, self._max_upload, self._body_timeout)
        else:
            raw = bodies.read_body(environ, self._max_body, self._body_timeout)
            body = bodies.json_object(raw) if route is not None else None
        if client is not None:
            state.client = client.name  # from here on, log lines name the client
            state.limits = client.limits
            state.safety_policy = client.safety
            state.cache_settings = client.cache  # the answer cache, if its entry turns it on
            state.end_user = end_user
            if end_user is not None and end_user.region is not None:
                state.region = end_user.region  # the token's region claim decides over the header
            if body is not None:
                client.access.refuse_model(body.get("model"), end_user)
            state.upstream_credentials = client.upstream_credentials
        if client is not None and path not in self._unmetered:
            generates = route.generates if route is not None else path in self._generating
            estimate = bodies.estimate_tokens(body, len(raw), self._output_estimate if generates else 0)
            # A store read the route needs next (a cached answer) goes with the admission's call.
            along = None
            if route is not None and body is not None and client.cache is not None:
                along = route.read_ahead(body, environ)
            state.admission = self._limiter.admit(client.name, client.limits, estimate, end_user, along)
            extra_headers.extend(state.admission.headers())
        if route is None:
            return self._flask
        answer = route(body or {}, raw, environ)
        if self._signer is not None and (
            (end_user is not None and end_user.sign) or environ.get(SIGN_HEADER) == "1"
        ):
            signed_id = end_user.token_id if end_user is not None and end_user.token_id else state.id
            answer = self._signer.signed(answer, signed_id)
        return answer

    def _listed_origins(self) -> frozenset[str]:
        store = self._gate.keys.current()
        return store.origins if store is not None else frozenset()

    def _settle(self, state: RequestState) -> None:
        admission = state.admission  # left on the state: the metrics record reads the budget in it
        if admission is not None:
            self._limiter.settle(admission, state.used)
