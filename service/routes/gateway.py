"""`GET /v1/models`, `GET /v1/models/<id>` and the legacy routes `/openai/models`, `/test/openai`.

The OpenAI-compatible POST routes are served by `service.relay`, outside Flask. The `/v1/models`
routes relay through its code, with the configured Bedrock models and aliases listed next to the
upstream's own; the legacy routes call the upstream client and answer its errors as it does.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from flask import Blueprint, Response, jsonify, request

from service import model_routing, relay, runtime
from service.errors import ApiError, error_response
from service.routes.fields import provider_key_field, request_fields
from service.upstream import UpstreamError, upstream_client
from service.usage import UsageRecord, normalise_usage

blueprint = Blueprint("gateway", __name__)


# --- routes --------------------------------------------------------------------------------------


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
    elif listed and relay.answer_error_code(response.get_data()) == relay.ERROR_CODES["no_key"]:
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
        record.emit(relay.status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
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
        record.emit(relay.status_of(error), upstream_seconds=time.perf_counter() - started, error=error.kind)
        return _error_response(error)
    upstream = time.perf_counter() - started
    record.emit(200, upstream_seconds=upstream, usage=normalise_usage(answer.get("usage")))
    try:
        message = answer["choices"][0]["message"]
        return jsonify({"role": message.get("role", "assistant"), "content": message.get("content")})
    except (KeyError, IndexError, TypeError, AttributeError):
        return error_response(502, "The upstream's answer had no message in it.")


# --- relaying --------------------------------------------------------------------------------------


def _relay_get(path: str, model: str | None) -> Response:
    return _response(relay.relay("GET", path, None, model, request.environ))


def _error_response(error: UpstreamError) -> Response:
    return _response(relay.error_answer(error))


def _response(answer: relay.Relayed) -> Response:
    response = Response(answer.body, status=answer.status, headers=answer.headers)
    if answer.on_close:
        response.call_on_close(answer.on_close)
    return response
