"""Relaying to the OpenAI-compatible upstream, and the POST routes that do nothing else.

`POST /v1/chat/completions`, `/v1/completions`, `/v1/responses`, `/v1/embeddings` and
`/v1/moderations` are served here as plain WSGI (`RELAY_ROUTES`), called by the request pipeline
(`service.pipeline`) after it has given the request an id and admitted its client; they never go
through Flask. They are the proxy's hot path, and they need nothing of Flask's routing, Request and
Response objects or hooks: on a small VM that machinery costs about 0.4 ms per call, a quarter of
what the proxy adds (README, "Benchmarks"). The `/v1/models` routes (Flask, `service.routes.gateway`) share
the rest of this module.

The proxy adds the provider key and relays everything else: request bodies go upstream byte for
byte (unknown fields too), answers come back unchanged, streams chunk by chunk as they arrive.
The client's own Authorization header never goes upstream. Each request writes one usage record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length

from service import model_routing, runtime
from service.errors import REQUEST_TOO_LARGE_MESSAGE, ApiError, error_body
from service.observability import current_request_id
from service.pipeline import Closing, WSGIApp
from service.routes import STREAM_HEADERS, bedrock_chat
from service.upstream import UpstreamError, UpstreamStream, upstream_client
from service.usage import StreamUsage, UsageRecord, usage_in

log = logging.getLogger(__name__)

# Request headers a client may pass on to the upstream (everything else stays here).
_FORWARDED_REQUEST_HEADERS = (("OpenAI-Beta", "HTTP_OPENAI_BETA"),)
# Upstream answer headers worth relaying to the client.
_RELAYED_PREFIXES = ("x-ratelimit-", "openai-", "retry-after")
# The OpenAI-compatible POST routes relayed as they are (chat completions also route to Bedrock).
RELAYED_POSTS = ("/chat/completions", "/embeddings", "/responses", "/completions", "/moderations")
STREAMABLE = ("/chat/completions", "/completions", "/responses")
# The `code` of the proxy's own errors about the upstream.
ERROR_CODES = {
    "no_key": "provider_key_missing",
    "unreachable": "upstream_unreachable",
    "timeout": "upstream_timeout",
    "http": "upstream_error",
}
_JSON = "application/json"


@dataclass
class Relayed:
    """An answer to send: status, headers, body chunks, and what to run once it has gone out.

    It is a WSGI application; the Flask routes turn it into a Flask Response instead.
    """

    status: int
    headers: list[tuple[str, str]]
    body: Iterable[bytes]
    on_close: Callable[[], None] | None = None

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        answer = Closing(self.body, self.on_close)
        try:
            start_response(status_line(self.status), self.headers)
        except BaseException:
            answer.close()  # never sent: the upstream stream is closed and the usage recorded anyway
            raise
        return answer


def status_line(status: int) -> str:
    return f"{status} {HTTP_STATUS_CODES.get(status, 'Unknown').upper()}"


# --- the POST routes ---------------------------------------------------------------------------


def _relay_route(path: str) -> WSGIApp:
    def serve(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "POST":
            raise ApiError(405, "The method is not allowed for the requested URL.", headers={"Allow": "POST"})
        raw, body = resolve_alias(*json_object_body(environ))
        # The one place the gateway picks a provider: Amazon Bedrock serves `bedrock/...` models,
        # the OpenAI-compatible upstream at OPENAI_BASE_URL everything else.
        if model_routing.is_bedrock(body.get("model")):
            if path != "/chat/completions":
                raise ApiError(
                    400,
                    f"Amazon Bedrock models serve /v1/chat/completions only, not /v1{path}.",
                    param="model",
                )
            return bedrock_chat.chat_completion(body)(environ, start_response)
        model = body.get("model") if isinstance(body.get("model"), str) else None
        if body.get("stream") is True and path in STREAMABLE:
            answer = relay_stream(path, raw, model, environ)
        else:
            answer = relay("POST", path, raw, model, environ)
        return answer(environ, start_response)

    return serve


RELAY_ROUTES: Mapping[str, WSGIApp] = {"/v1" + path: _relay_route(path) for path in RELAYED_POSTS}


# --- relaying ----------------------------------------------------------------------------------


def relay(method: str, path: str, raw: bytes | None, model: str | None, environ: dict) -> Relayed:
    """Send one request upstream (retried as `service.upstream` decides); the answer to send back."""
    record = UsageRecord(model=model)
    query = environ.get("QUERY_STRING", "")
    started = time.perf_counter()
    try:
        answer = upstream_client().request(
            method, path, body=raw, query=query, headers=forwarded_headers(environ)
        )
    except UpstreamError as error:
        record.emit(status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
        return error_answer(error)
    body = answer.body
    headers = relayed_headers(answer.headers)
    if answer.status >= 200 and answer.status not in (204, 304):
        content_type = answer.headers.get("content-type", _JSON)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *headers]
        chunks = [body]
    else:
        chunks = []  # HTTP says these have no body, nor a Content-Length (RFC 9110)

    def record_usage() -> None:
        # Once the answer has gone out: reading the usage and logging it is not the client's wait.
        record.emit(answer.status, upstream_seconds=answer.latency, usage=usage_in(body))

    return Relayed(answer.status, headers, chunks, record_usage)


def relay_stream(path: str, raw: bytes, model: str | None, environ: dict) -> Relayed:
    record = UsageRecord(model=model, stream=True)
    started = time.perf_counter()
    try:
        # Opening may retry: nothing has reached the client yet.
        stream = upstream_client().stream("POST", path, body=raw, headers=forwarded_headers(environ))
    except UpstreamError as error:
        record.emit(status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
        return error_answer(error)
    headers = [
        ("Content-Type", stream.headers.get("content-type", "text/event-stream")),
        *STREAM_HEADERS.items(),
        *relayed_headers(stream.headers),
    ]
    # Closing also when the chunks never start (a client gone at once); closing twice is fine.
    return Relayed(stream.status, headers, _relay_chunks(stream, record), stream.close)


def _relay_chunks(stream: UpstreamStream, record: UsageRecord) -> Iterator[bytes]:
    """Yield the upstream's bytes as they come; runs after the pipeline returned (no app context)."""
    meter = StreamUsage()
    problem = None
    try:
        while chunk := stream.read_chunk():
            meter.feed(chunk)
            yield chunk
    except UpstreamError as error:
        # The status line has gone out already; an error event tells SDKs the stream failed
        # (the openai client raises APIError on it) instead of ending it as if it were complete.
        problem = error.kind
        # No app context here: name the request and client explicitly.
        context = {"request_id": record.request_id, "client": record.client}
        log.warning("Upstream stream failed: %s", error.message, extra=context)
        yield b"data: " + json.dumps(error_body(status_of(error), error.message)).encode() + b"\n\n"
    except GeneratorExit:
        problem = "client_disconnected"  # closing the stream below closes the upstream request
        raise
    finally:
        stream.close()
        upstream = (stream.finished or stream.opened) - stream.started
        record.emit(stream.status, upstream_seconds=upstream, usage=meter.usage, error=problem)


# --- the request ---------------------------------------------------------------------------------


def json_object_body(environ: dict) -> tuple[bytes, dict]:
    """The raw body and the JSON object in it; ApiError 400 (or 413) naming what is wrong."""
    raw = read_body(environ, runtime.settings().max_body_bytes)
    if not raw.strip():
        raise ApiError(400, "The request body is empty; send a JSON object.")
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ApiError(
            400, f"The request body is not valid JSON ({error.msg} at character {error.pos})."
        ) from None
    except ValueError:  # bytes that are not UTF-8 (or UTF-16/32) text
        raise ApiError(400, "The request body is not valid JSON (it is not UTF-8 text).") from None
    except RecursionError:
        raise ApiError(400, "The request body is nested too deeply to be read as JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"The request body must be a JSON object, not {_json_kind(body)}.")
    return raw, body


def read_body(environ: dict, limit: int) -> bytes:
    """The request body; ApiError 413 when it is longer than `limit` bytes.

    Its length is known: the pipeline has read a chunked body already (`service.pipeline`).
    """
    length = get_content_length(environ) or 0
    if length > limit:
        raise ApiError(413, REQUEST_TOO_LARGE_MESSAGE)  # said up front: nothing is read
    return environ["wsgi.input"].read(length) if length else b""


def resolve_alias(raw: bytes, body: dict) -> tuple[bytes, dict]:
    """Replace an alias (AIPROXY_MODEL_ALIASES) by the full model name the provider knows."""
    aliases = runtime.settings().model_aliases
    model = body.get("model")
    if isinstance(model, str) and model in aliases:
        body["model"] = model_routing.resolve(model, aliases)
        raw = json.dumps(body).encode()
    return raw, body


def _json_kind(value: object) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def forwarded_headers(environ: dict) -> dict[str, str]:
    """The request headers that go upstream: the few a client may pass on, and our request id."""
    headers = {name: environ[key] for name, key in _FORWARDED_REQUEST_HEADERS if key in environ}
    headers["X-Request-Id"] = current_request_id()
    return headers


# --- the answer ----------------------------------------------------------------------------------


def relayed_headers(upstream_headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """The upstream's headers a client gets: rate limits and OpenAI's own; its request id renamed."""
    relayed = []
    for name, value in upstream_headers.items():
        lowered = name.lower()
        if lowered.startswith(_RELAYED_PREFIXES):
            relayed.append((name, value))
        elif lowered == "x-request-id":
            relayed.append(("X-Upstream-Request-Id", value))  # ours stays in X-Request-Id
    return relayed


def status_of(error: UpstreamError) -> int:
    if error.kind == "http":
        return error.status or 502
    return {"no_key": 503, "timeout": 504}.get(error.kind, 502)


def error_answer(error: UpstreamError) -> Relayed:
    """Upstream http errors keep their status and body; the rest become the proxy's own errors."""
    status = status_of(error)
    if error.kind == "http" and error.body and _error_object(error.body) is not None:
        body = error.body
    else:
        body = json_bytes(error_body(status, error.message, code=ERROR_CODES.get(error.kind)))
    headers = [("Content-Type", _JSON), ("Content-Length", str(len(body))), *error.headers.items()]
    return Relayed(status, headers, [body])


def json_bytes(value: Any) -> bytes:
    """Compact JSON (the proxy's own error bodies)."""
    return json.dumps(value, separators=(",", ":")).encode()


def _error_object(body: bytes) -> dict | None:
    """The `error` object of an OpenAI-shaped error body, or None when the body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


def answer_error_code(body: bytes) -> Any:
    """The `code` of an OpenAI-shaped error body, or None."""
    error = _error_object(body)
    return error.get("code") if error else None
