"""Answers as WSGI applications: a status, headers, body chunks, and what to run once they are sent.

Every route returns an `ClientResponse`, whichever provider served it: the request pipeline calls it as a
WSGI app, and Flask (for the routes it serves) accepts it as a return value. Closing the answer,
which the server does once the body has gone out or the client has gone away, runs its
`on_close` steps: a stream's upstream connection closed, its usage recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from werkzeug.http import HTTP_STATUS_CODES

if TYPE_CHECKING:  # typeshed's WSGI types exist only for the type checker
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

JSON = "application/json"


def status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown').upper()}"


def json_bytes(value: Any) -> bytes:
    """Compact JSON, keys in the order they were built."""
    return json.dumps(value, separators=(",", ":")).encode()


def has_no_body(status: int) -> bool:
    """1xx, 204 and 304 answers have no body, nor a Content-Length (RFC 9110)."""
    return status < 200 or status in (204, 304)


class ClientResponse:
    """An answer to send; call it as a WSGI app."""

    def __init__(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: Iterable[bytes],
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.status = status
        self.headers = list(headers)
        self.body = body
        self._on_close = [on_close] if on_close else []

    @classmethod
    def of_bytes(
        cls,
        status: int,
        body: bytes,
        content_type: str = JSON,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] = (),
        on_close: Callable[[], None] | None = None,
    ) -> ClientResponse:
        """A whole body known up front (its Content-Length set), or none where HTTP forbids one."""
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers)
        if has_no_body(status):
            return cls(status, pairs, [], on_close)
        head = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        return cls(status, head + pairs, [body], on_close)

    @classmethod
    def json(
        cls, value: Any, status: int = 200, *, headers: Mapping[str, str] | None = None
    ) -> ClientResponse:
        return cls.of_bytes(status, json_bytes(value), JSON, headers=headers or {})

    def content(self) -> bytes:
        """The whole body (of an answer whose body is in memory, not a stream)."""
        return b"".join(self.body)

    def replace_json(self, value: Any, status: int | None = None) -> None:
        """Respond with `value` as JSON instead, keeping the other headers and the steps run on close."""
        body = json_bytes(value)
        self.status = status or self.status
        self.headers = [
            (name, val)
            for name, val in self.headers
            if name.lower() not in ("content-type", "content-length")
        ]
        self.headers[:0] = [("Content-Type", JSON), ("Content-Length", str(len(body)))]
        self.body = [body]

    def also_on_close(self, step: Callable[[], None]) -> None:
        self._on_close.append(step)

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Closing:
        answer = Closing(self.body, *self._on_close)
        try:
            start_response(status_line(self.status), self.headers)
        except BaseException:
            answer.close()  # never sent: the upstream stream is closed and the usage recorded anyway
            raise
        return answer


def unsent(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable[[bytes], object]:
    """The `start_response` of an answer called in-process (its status and headers are read off
    the object): nothing is sent, and calling the answer still runs its steps when it is closed."""
    return _write_nothing


def _write_nothing(data: bytes) -> None:
    return None


class Closing:
    """An answer's chunks, closed with the steps that follow it.

    Closing closes the chunks (when they can be closed), then runs each of `after` in order. Every
    step runs even when a step before it fails; the first failure is raised at the end. Closing
    twice runs nothing the second time.
    """

    def __init__(self, chunks: Iterable[bytes], *after: Callable[[], None] | None) -> None:
        self._chunks = chunks
        self._after = [step for step in after if step is not None]
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        close_chunks = getattr(self._chunks, "close", None)
        failure: BaseException | None = None
        for step in [close_chunks, *self._after] if close_chunks else self._after:
            try:
                step()
            except BaseException as error:  # the next steps still run; this one is raised after
                failure = failure or error
        if failure is not None:
            raise failure


class JsonRoute:
    """A route the request pipeline serves outside Flask: POST only, its body a JSON object that
    the pipeline has read and parsed; it returns the answer."""

    generates = True  # whether it asks a model for output (admission reserves tokens for it)
    # An upload: the pipeline reads no body and parses nothing; the route finds the unread body in
    # `environ[service.edge.bodies.UPLOAD]` and sends it on as it arrives (its `body` is {}).
    streams_body = False
    # Its path's other methods (GET /v1/files beside POST) are Flask's routes, not a 405.
    other_methods_in_flask = False

    def __call__(self, body: dict[str, Any], raw: bytes, environ: WSGIEnvironment) -> ClientResponse:
        raise NotImplementedError

    def read_ahead(self, body: dict[str, Any], environ: WSGIEnvironment) -> Any:
        """A store read the route will need (an answer cache's entry), for the pipeline to send
        with the request's admission: one round trip for both. None: nothing to read."""
        return None
