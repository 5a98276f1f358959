"""The OpenAI-compatible gateway (`/v1/...`) and the legacy routes `/openai/models`, `/test/openai`.

The proxy adds the provider key and relays everything else: request bodies go upstream byte for
byte (unknown fields too), answers come back unchanged, streams chunk by chunk as they arrive.
The client's own Authorization header never goes upstream. Each request writes one usage record.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from urllib.parse import quote

from flask import Blueprint, Response, g, jsonify, request

from service import model_routing, runtime
from service.errors import ApiError, error_body, error_response
from service.routes import STREAM_HEADERS, bedrock_chat
from service.routes.fields import provider_key_field, request_fields
from service.upstream import UpstreamError, UpstreamStream, upstream_client
from service.usage import StreamUsage, UsageRecord, normalise_usage, usage_in

blueprint = Blueprint("gateway", __name__)
log = logging.getLogger(__name__)

# Request headers a client may pass on to the upstream (everything else stays here).
_FORWARDED_REQUEST_HEADERS = ("OpenAI-Beta",)
# Upstream answer headers worth relaying to the client.
_RELAYED_PREFIXES = ("x-ratelimit-", "openai-", "retry-after")
# The OpenAI-compatible POST routes that are relayed as they are.
RELAYED_POSTS = ("/embeddings", "/responses", "/completions", "/moderations")
STREAMABLE = ("/chat/completions", "/completions", "/responses")
# The `code` of the proxy's own errors about the upstream.
_ERROR_CODES = {
    "no_key": "provider_key_missing",
    "unreachable": "upstream_unreachable",
    "timeout": "upstream_timeout",
    "http": "upstream_error",
}


# --- routes --------------------------------------------------------------------------------------


@blueprint.post("/v1/chat/completions")
def chat_completions() -> Response:
    raw, body = _json_object_body()
    raw, body = _resolve_alias(raw, body)
    # The one place the gateway picks a provider: Amazon Bedrock serves `bedrock/...` models,
    # the OpenAI-compatible upstream at OPENAI_BASE_URL everything else.
    if model_routing.is_bedrock(body.get("model")):
        return bedrock_chat.chat_completion(body)
    return _relay_post("/chat/completions", raw, body)


def _make_post_route(path: str):
    def relay() -> Response:
        raw, body = _resolve_alias(*_json_object_body())
        if model_routing.is_bedrock(body.get("model")):
            raise ApiError(
                400,
                f"Amazon Bedrock models serve /v1/chat/completions only, not /v1{path}.",
                param="model",
            )
        return _relay_post(path, raw, body)

    relay.__name__ = "relay_" + path.strip("/").replace("/", "_")
    return relay


for _path in RELAYED_POSTS:
    blueprint.add_url_rule("/v1" + _path, view_func=_make_post_route(_path), methods=["POST"])


@blueprint.get("/v1/models")
def list_models() -> Response:
    response = _relay_get("/models", model=None)
    settings = runtime.settings()
    listed = model_routing.listed_models(settings.model_aliases, settings.bedrock_models)
    if listed and response.status_code == 200:
        # The configured Bedrock models and aliases, next to the upstream's own.
        upstream = response.get_json(silent=True)
        merged = model_routing.with_listed_models(upstream, listed)
        if merged is not upstream:  # an OpenAI list object came back: show ours next to it
            response.set_data(json.dumps(merged))
    elif listed and _error_code(response) == _ERROR_CODES["no_key"]:
        return jsonify({"object": "list", "data": listed})  # Bedrock only: no upstream key is needed
    return response


@blueprint.get("/v1/models/<path:model_id>")
def get_model(model_id: str) -> Response:
    settings = runtime.settings()
    for model in model_routing.listed_models(settings.model_aliases, settings.bedrock_models):
        if model["id"] == model_id:
            return jsonify(model)
    if any(segment in ("", ".", "..") for segment in model_id.split("/")):
        # Dot segments would let the path climb out of /models to other upstream endpoints.
        raise ApiError(404, f"No model {model_id!r}.", param="model", code="model_not_found")
    return _relay_get("/models/" + quote(model_id, safe="/:@"), model=model_id)


# --- legacy routes of the original service ---------------------------------------------------------


@blueprint.get("/openai/models")
def legacy_models() -> Response:
    """The upstream's models as a bare list (the `data` array)."""
    record = UsageRecord(model=None)
    started = time.perf_counter()
    try:
        models = upstream_client().list_models()
    except UpstreamError as error:
        record.emit(_status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
        return _error_response(error)
    record.emit(200, upstream_seconds=time.perf_counter() - started)
    return jsonify(models.get("data", []))


@blueprint.route("/test/openai", methods=["GET", "POST"])
def legacy_test_openai() -> Response:
    """A tiny "Hello world" chat; parameters `model` and `api-key` (a provider key to use)."""
    params = request_fields()
    model = params.get("model") or runtime.settings().assessment_model
    if not isinstance(model, str):
        raise ApiError(400, "The parameter 'model' must be a string.", param="model")
    api_key = provider_key_field(params)
    record = UsageRecord(model=model)
    body = {"model": model, "messages": [{"role": "user", "content": "Hello world"}]}
    started = time.perf_counter()
    try:
        answer = upstream_client().chat_completion(body, api_key=api_key)
    except UpstreamError as error:
        record.emit(_status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
        return _error_response(error)
    upstream = time.perf_counter() - started
    record.emit(200, upstream_seconds=upstream, usage=normalise_usage(answer.get("usage")))
    try:
        message = answer["choices"][0]["message"]
        return jsonify({"role": message.get("role", "assistant"), "content": message.get("content")})
    except (KeyError, IndexError, TypeError, AttributeError):
        return error_response(502, "The upstream's answer had no message in it.")


# --- relaying --------------------------------------------------------------------------------------


def _relay_post(path: str, raw: bytes, body: dict) -> Response:
    model = body.get("model") if isinstance(body.get("model"), str) else None
    if body.get("stream") is True and path in STREAMABLE:
        return _relay_stream(path, raw, model)
    return _relay("POST", path, raw, model)


def _relay_get(path: str, model: str | None) -> Response:
    return _relay("GET", path, None, model)


def _relay(method: str, path: str, raw: bytes | None, model: str | None) -> Response:
    record = UsageRecord(model=model)
    client = upstream_client()
    query = request.query_string.decode("latin-1")
    started = time.perf_counter()
    try:
        answer = client.request(method, path, body=raw, query=query, headers=_forwarded_headers())
    except UpstreamError as error:
        record.emit(_status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
        return _error_response(error)
    response = Response(
        answer.body, status=answer.status, content_type=answer.headers.get("content-type", "application/json")
    )
    # Recorded once the answer has gone out: reading the usage and logging it is not the client's wait.
    response.call_on_close(
        lambda: record.emit(answer.status, upstream_seconds=answer.latency, usage=usage_in(answer.body))
    )
    _copy_relayed_headers(answer.headers, response)
    return response


def _relay_stream(path: str, raw: bytes, model: str | None) -> Response:
    record = UsageRecord(model=model, stream=True)
    started = time.perf_counter()
    try:
        # Opening may retry: nothing has reached the client yet.
        stream = upstream_client().stream("POST", path, body=raw, headers=_forwarded_headers())
    except UpstreamError as error:
        record.emit(_status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
        return _error_response(error)
    response = Response(
        _relay_chunks(stream, record),
        status=stream.status,
        content_type=stream.headers.get("content-type", "text/event-stream"),
        headers=STREAM_HEADERS,
    )
    response.call_on_close(stream.close)  # also when the generator never starts; closing twice is fine
    _copy_relayed_headers(stream.headers, response)
    return response


def _relay_chunks(stream: UpstreamStream, record: UsageRecord) -> Iterator[bytes]:
    """Yield the upstream's bytes as they come; runs after the view returned (no request context)."""
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
        # No request context here: name the request and client explicitly.
        context = {"request_id": record.request_id, "client": record.client}
        log.warning("Upstream stream failed: %s", error.message, extra=context)
        yield b"data: " + json.dumps(error_body(_status_of(error), error.message)).encode() + b"\n\n"
    except GeneratorExit:
        problem = "client_disconnected"  # closing the stream below closes the upstream request
        raise
    finally:
        stream.close()
        upstream = (stream.finished or stream.opened) - stream.started
        record.emit(stream.status, upstream_seconds=upstream, usage=meter.usage, error=problem)


# --- helpers -----------------------------------------------------------------------------------------


def _json_object_body() -> tuple[bytes, dict]:
    raw = request.get_data(cache=False)
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


def _resolve_alias(raw: bytes, body: dict) -> tuple[bytes, dict]:
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


def _forwarded_headers() -> dict[str, str]:
    headers = {name: request.headers[name] for name in _FORWARDED_REQUEST_HEADERS if name in request.headers}
    headers["X-Request-Id"] = g.get("request_id", "-")
    return headers


def _copy_relayed_headers(upstream_headers, response: Response) -> None:
    for name, value in upstream_headers.items():
        lowered = name.lower()
        if lowered.startswith(_RELAYED_PREFIXES):
            response.headers[name] = value
        elif lowered == "x-request-id":
            response.headers["X-Upstream-Request-Id"] = value  # ours stays in X-Request-Id


def _status_of(error: UpstreamError) -> int:
    if error.kind == "http":
        return error.status or 502
    return {"no_key": 503, "timeout": 504}.get(error.kind, 502)


def _error_response(error: UpstreamError) -> Response:
    """Upstream http errors keep their status and body; the rest become the proxy's own errors."""
    status = _status_of(error)
    if error.kind == "http" and error.body and _is_openai_error(error.body):
        response = Response(error.body, status=status, content_type="application/json")
    else:
        response = error_response(status, error.message, code=_ERROR_CODES.get(error.kind))
    for name, value in error.headers.items():
        response.headers[name] = value
    return response


def _error_code(response: Response) -> object:
    data = response.get_json(silent=True)
    error = data.get("error") if isinstance(data, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def _is_openai_error(body: bytes) -> bool:
    try:
        data = json.loads(body)
    except ValueError:
        return False
    return isinstance(data, dict) and isinstance(data.get("error"), dict)
