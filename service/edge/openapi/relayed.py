"""The operations that reach an upstream for the client: the relayed `/v1` routes, the model
lists, and the legacy `/test/openai`. Their bodies are described loosely (`additionalProperties:
true`): the proxy relays them unchanged and the OpenAI API reference is their real contract."""

from __future__ import annotations

from typing import Any

from service.assessment.fields import API_KEY, MODEL
from service.edge.openapi.assessment import body, query
from service.edge.openapi.common import PROVIDER_ERRORS, RELAYED, error, header, json_answer, ref, responses

# How a relayed request's `model` is routed (service.gateway.routing, docs/routing.md).
ROUTING = (
    "The body's `model` picks who answers: `bedrock/<id>` (or `bedrock.<id>`) Amazon Bedrock, "
    "`<upstream>/<model>` a named upstream of AIPROXY_UPSTREAMS, an alias of AIPROXY_MODEL_ALIASES "
    "(a model group is tried deployment by deployment on 429, 5xx, a timeout or an unreachable "
    "provider, a failed deployment passed over for a while), anything else the default upstream. "
    "`x-aiproxy-deployment` names the deployment that answered."
)
ANSWER_HEADERS = {
    "x-aiproxy-deployment": header(
        "The deployment that answered: `<upstream>/<model>` or `bedrock/<id>` (what no header can "
        "carry, such as a line break or a non-ASCII letter, as its backslash escape: `\\u2603`)",
        {"type": "string"},
    ),
    # The answer cache (docs/cache.md): only for a client whose key store entry turns it on.
    "x-aiproxy-cache": header(
        "`hit`: answered from the answer cache, not charged; `miss`: asked of the provider (clients "
        "with a cache only; a request may send `Cache-Control: no-cache`, `no-store` or `max-age=N`)",
        {"type": "string", "enum": ["hit", "miss"]},
    ),
    "Age": header("On a hit: the seconds since the cached answer was kept", {"type": "integer"}),
    **{
        f"x-ratelimit-{what}": header(
            f"The client's own {what.replace('-', ' ')} (when a key store is configured)", {"type": "string"}
        )
        for what in (
            "limit-requests",
            "remaining-requests",
            "reset-requests",
            "limit-tokens",
            "remaining-tokens",
            "reset-tokens",
        )
    },
}


def relayed_post(summary: str, example: dict[str, Any], *, streams: bool) -> dict[str, Any]:
    ok = json_answer("The upstream's answer, unchanged")
    ok["headers"] = {**ok["headers"], **ANSWER_HEADERS}
    if streams:
        ok["description"] += '; with "stream": true, Server-Sent Events ending with `data: [DONE]`'
        ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "description": ROUTING,
            "tags": ["OpenAI-compatible"],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("Object"), "example": example}},
            },
            "responses": responses(
                ok,
                {
                    "400": error(
                        "Body empty, not JSON or not a JSON object; `model` names an upstream that is not "
                        "configured; a client with a budget asks for a model without a price; or the "
                        "upstream rejected the request"
                    )
                },
                PROVIDER_ERRORS,
                RELAYED,
            ),
        }
    }


def test_openai() -> dict[str, Any]:
    """The legacy `"Hello world"` chat, whose `model` and `api-key` are read as the assessment's."""
    fields = (MODEL, API_KEY)
    get = {
        "summary": 'Send a tiny "Hello world" chat to the upstream',
        "tags": ["Legacy"],
        "parameters": query(fields),
        "responses": responses(
            json_answer("The assistant message", ref("Message")),
            {
                "400": error(
                    "A parameter is unusable (`param` names it), or the upstream rejected the request"
                )
            },
            PROVIDER_ERRORS,
            RELAYED,
        ),
    }
    post = {
        **{key: value for key, value in get.items() if key != "parameters"},
        "description": "The parameters come in the body, or in the query string (the body wins).",
        "requestBody": body(fields),
    }
    return {"get": get, "post": post}


def paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": relayed_post(
            "Chat completion (streams with stream: true; bedrock/... models: Amazon Bedrock)",
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]},
            streams=True,
        ),
        "/v1/completions": relayed_post(
            "Legacy text completion",
            {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time", "max_tokens": 20},
            streams=True,
        ),
        "/v1/responses": relayed_post(
            "Responses API", {"model": "gpt-4o-mini", "input": "Say hello"}, streams=True
        ),
        "/v1/embeddings": relayed_post(
            "Embeddings", {"model": "text-embedding-3-small", "input": ["first text"]}, streams=False
        ),
        "/v1/moderations": relayed_post(
            "Moderation", {"model": "omni-moderation-latest", "input": "some text"}, streams=False
        ),
        "/v1/models": {
            "get": {
                "summary": "List the upstream's models, then the configured Bedrock models and aliases",
                "tags": ["OpenAI-compatible"],
                "responses": responses(json_answer("Model list"), PROVIDER_ERRORS, RELAYED),
            }
        },
        "/v1/models/{model_id}": {
            "get": {
                "summary": "One model",
                "tags": ["OpenAI-compatible"],
                "parameters": [
                    {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
                "responses": responses(
                    json_answer("Model"), {"404": error("No such model")}, PROVIDER_ERRORS, RELAYED
                ),
            }
        },
        "/openai/models": {
            "get": {
                "summary": "The upstream's models as a bare list (the data array)",
                "tags": ["Legacy"],
                "responses": responses(
                    json_answer("Models", {"type": "array", "items": ref("Object")}), PROVIDER_ERRORS, RELAYED
                ),
            }
        },
        "/test/openai": test_openai(),
    }
