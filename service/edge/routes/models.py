"""`GET /v1/models`, `GET /v1/models/<id>` and the original service's legacy routes
`/openai/models` and `/test/openai`.

The model list merges every provider's: the default upstream's own list, each named upstream's
models under its prefix, the configured Bedrock models and the aliases. A provider that fails to
list is left out with a WARNING; only when nothing at all can be listed does the default
upstream's error reach the client.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import quote

from flask import Blueprint

from service.assessment.request import provider_key
from service.core.errors import ProviderError, ProviderKeyMissing, RequestRejected
from service.core.responses import ClientResponse
from service.edge.forwarding import forwarded_headers
from service.edge.routes.fields import request_fields
from service.gateway.providers import RelayRequest
from service.runtime import Runtime

log = logging.getLogger(__name__)


def blueprint(runtime: Runtime) -> Blueprint:
    router = runtime.router
    routes = Blueprint("models", __name__)

    def listed() -> list[dict[str, Any]]:
        """Every model the proxy lists besides the default upstream's own."""
        models = []
        for name, upstream in router.upstreams.items():
            try:
                models += [{**m, "id": upstream.prefix + str(m.get("id"))} for m in upstream.models()]
            except ProviderError as error:
                log.warning("Upstream %s could not list its models (%s); left out", name, error.message)
        return models + router.bedrock.models() + router.listed_aliases()

    @routes.get("/v1/models")
    def list_models() -> ClientResponse:
        others = listed()
        try:
            answer = router.default.relay(RelayRequest("/models", None, method="GET"))
        except ProviderError as error:
            if not others:
                raise
            if not isinstance(error, ProviderKeyMissing):
                log.warning("The default upstream could not list its models (%s); left out", error.message)
            return ClientResponse.json({"object": "list", "data": others})
        if not others or answer.status != 200:
            return answer
        upstream = _json(answer)
        if not isinstance(upstream, dict) or not isinstance(upstream.get("data"), list):
            return answer  # not an OpenAI list object: relayed as it came
        known = {model.get("id") for model in upstream["data"] if isinstance(model, dict)}
        answer.replace_json(
            {**upstream, "data": upstream["data"] + [m for m in others if m["id"] not in known]}
        )
        return answer

    @routes.get("/v1/models/<path:model_id>")
    def get_model(model_id: str) -> ClientResponse:
        for model in router.bedrock.models() + router.listed_aliases():
            if model["id"] == model_id:
                return ClientResponse.json(model)
        if any(segment in ("", ".", "..") for segment in model_id.split("/")):
            # Dot segments would let the path climb out of /models to other upstream endpoints.
            raise RequestRejected(
                f"No model {model_id!r}.", status=404, param="model", code="model_not_found"
            )
        deployment = router.deployment(model_id)
        path = "/models/" + quote(deployment.model, safe="/:@")
        return deployment.provider.relay(RelayRequest(path, deployment.model, method="GET"))

    # --- legacy routes of the original service ---------------------------------------------------

    @routes.get("/openai/models")
    def legacy_models() -> ClientResponse:
        """The default upstream's models as a bare list (the `data` array)."""
        return ClientResponse.json(router.default.models())

    @routes.route("/test/openai", methods=["GET", "POST"])
    def legacy_test_openai() -> ClientResponse:
        """A tiny "Hello world" chat; parameters `model` and `api-key` (a provider key to use)."""
        params = request_fields()
        model = params.get("model")
        if model is not None and not isinstance(model, str):
            # Not `or`: 0, false, {} and [] are not the default model but a mistake.
            raise RequestRejected("The parameter 'model' must be a string.", param="model")
        model = (model or "").strip() or runtime.settings.assessment_model
        api_key = provider_key(params)
        deployment = router.deployment(model)
        body = {"model": deployment.model, "messages": [{"role": "user", "content": "Hello world"}]}
        request = RelayRequest(
            "/chat/completions",
            deployment.model,
            body=body,
            raw=json.dumps(body).encode(),
            api_key=api_key,
            headers=forwarded_headers({}),
        )
        answer = deployment.provider.relay(request)
        if answer.status != 200:
            return answer
        try:
            message = _json(answer)["choices"][0]["message"]
            answer.replace_json({"role": message.get("role", "assistant"), "content": message.get("content")})
        except (KeyError, IndexError, TypeError, AttributeError):
            answer.replace_json(ProviderError("The upstream's answer had no message in it.").body(), 502)
        return answer

    return routes


def _json(answer: ClientResponse) -> Any:
    try:
        return json.loads(answer.content())
    except (ValueError, RecursionError):
        return None
