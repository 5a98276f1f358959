"""What every request goes through, whichever part of the app serves it.

`RequestPipeline` is WSGI middleware installed as the Flask app's `wsgi_app`, so the server and
Flask's test client both go through it. For each request it:

1. pushes an app context and puts the request's state on `g`: its id (`X-Request-Id` when the
   client sent a short, plain one, else a new one), method, path, start time and, once admitted,
   client. Log lines (`service.logformat`), usage records and Flask routes all read it there;
2. admits the client (`service.auth.ClientGate`: key, then limits), and reads a chunked body
   (one without Content-Length) whole, refusing one over AIPROXY_MAX_BODY_BYTES with a 413;
3. hands the request to the relay routes (`service.relay.RELAY_ROUTES`, plain WSGI, the hot path)
   or else to Flask;
4. answers the proxy's own errors (`ApiError`) in the OpenAI error shape; any other exception
   that reaches it (a relay route's, the client check's) is logged, so reported to Honeybadger,
   and answered with a 500, as Flask does for its routes;
5. adds `X-Request-Id` to the answer, and once the answer has been sent or abandoned frees the
   client's in-flight slot and writes the access line (method, path, status, duration).
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from flask import Flask

from service.auth import ClientGate
from service.errors import REQUEST_TOO_LARGE_MESSAGE, SERVER_ERROR_MESSAGE, ApiError, error_response
from service.observability import REQUEST_ID_HEADER, request_id_from

log = logging.getLogger(__name__)
access_log = logging.getLogger("service.access")

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


class RequestPipeline:
    """The WSGI app the server calls: the steps above around Flask's `wsgi_app` and the relay routes."""

    def __init__(self, app: Flask, gate: ClientGate, routes: Mapping[str, WSGIApp]) -> None:
        self._app = app
        self._flask = app.wsgi_app
        self._max_body = app.config["MAX_CONTENT_LENGTH"]
        self._gate = gate
        self._routes = routes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        # As Flask shows it: WSGI servers hand the path over as Latin-1; clients send UTF-8.
        path = (environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID", ""))
        status = "500"

        def start(status_line: str, headers: list, exc_info: Any = None) -> Any:
            nonlocal status
            status = status_line.partition(" ")[0]
            headers.append((REQUEST_ID_HEADER, request_id))
            return start_response(status_line, headers, exc_info)

        release = None
        context = self._app.app_context()
        context.push()  # Flask reuses it for the request context it pushes on top
        state = context.g  # what `flask.g` is while it is pushed
        try:
            state.request_id, state.method, state.path, state.started = request_id, method, path, started
            try:
                release = self._gate.admit(method, path, environ.get("HTTP_AUTHORIZATION", ""))
                if "HTTP_TRANSFER_ENCODING" in environ and not environ.get("CONTENT_LENGTH"):
                    _read_chunked_body(environ, self._max_body)
                route = self._routes.get(path, self._flask)
                answer = route(environ, start)
            except ApiError as error:
                answer = error.response()(environ, start)
            except Exception:
                # Flask answers its own routes' exceptions (outside tests); this is everything else.
                log.exception("Exception on %s [%s]", path, method)
                answer = error_response(500, SERVER_ERROR_MESSAGE)(environ, start)
            client = state.get("client", "anonymous")
        except BaseException:
            if release is not None:
                release()
            raise
        finally:
            context.pop()

        def log_access() -> None:
            duration = round((time.perf_counter() - started) * 1000, 1)
            fields = {"request_id": request_id, "client": client, "duration_ms": duration}
            access_log.info("%s %s %s", method, path, status, extra=fields)

        # Once the answer has gone out (the server closes it then): the client does not wait for
        # the access line, its duration includes sending, and a stream holds its slot to the end.
        return Closing(answer, release, log_access)


def _read_chunked_body(environ: dict, limit: int) -> None:
    """Read a body sent without a length (chunked) here, refusing one over `limit` bytes (413).

    Werkzeug stops reading such a body at the limit and hands over what it got, so a route would
    see it cut short (and answer "not valid JSON") instead of too large. Read here, it reaches
    every route whole and with a Content-Length, as bodies of known length do.
    """
    raw = environ["wsgi.input"].read(limit + 1)  # the server ends the body (wsgi.input_terminated)
    if len(raw) > limit:
        raise ApiError(413, REQUEST_TOO_LARGE_MESSAGE)
    environ["wsgi.input"] = io.BytesIO(raw)
    environ["CONTENT_LENGTH"] = str(len(raw))
    del environ["HTTP_TRANSFER_ENCODING"]  # it is no longer chunked (werkzeug would ignore the length)


class Closing:
    """An answer's chunks, closed with the steps that follow it.

    Closing closes the chunks (when they can be closed), then runs each of `after` in order. Every
    step runs even when a step before it fails; the first failure is raised at the end.
    """

    def __init__(self, chunks: Iterable[bytes], *after: Callable[[], None] | None) -> None:
        self._chunks = chunks
        self._after = [step for step in after if step is not None]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        close_chunks = getattr(self._chunks, "close", None)
        failure: BaseException | None = None
        for step in [close_chunks, *self._after] if close_chunks else self._after:
            try:
                step()
            except BaseException as error:  # the next steps still run; this one is raised after
                failure = failure or error
        if failure is not None:
            raise failure
