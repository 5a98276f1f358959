"""The pieces every operation of the OpenAPI document is built from: references, headers, JSON
answers, and the errors the pipeline, the providers and relayed upstreams may answer."""

from __future__ import annotations

from typing import Any


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def header(description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"description": description, "required": required, "schema": schema}


REQUEST_ID = {
    "X-Request-Id": header(
        "The request's id (the client's own X-Request-Id when it sent a short, plain one)",
        {"type": "string", "minLength": 1},
        required=True,
    )
}


def error(description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {**REQUEST_ID, **headers},
        "content": {"application/json": {"schema": ref("Error")}},
    }


def json_answer(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "headers": REQUEST_ID,
        "content": {"application/json": {"schema": schema or ref("Object")}},
    }


def retry_after(*, required: bool = False) -> dict[str, Any]:
    return header(
        "Seconds to wait before trying again", {"type": "string", "pattern": "^[0-9]+$"}, required=required
    )


def www_authenticate(*, required: bool = True) -> dict[str, Any]:
    return header(
        "The scheme the client key is sent with", {"type": "string", "const": "Bearer"}, required=required
    )


RETRY_AFTER = retry_after()

# What the request pipeline (service/edge/pipeline.py, service/edge/bodies.py) and the client gate may answer
# on any route that needs a client key, before the route itself runs.
PIPELINE_ERRORS = {
    "400": error("The request body ended before its Content-Length, or its chunked framing cannot be read"),
    "401": error(
        "Missing or wrong client key (when a key store is configured)",
        **{"WWW-Authenticate": www_authenticate()},
    ),
    "408": error("The request body did not arrive within AIPROXY_BODY_TIMEOUT"),
    "413": error("The request body is over AIPROXY_MAX_BODY_BYTES"),
    "429": error("Over the client's limits", **{"Retry-After": RETRY_AFTER}),
    "503": error("The client key store or the limits store is unavailable"),
}
PROVIDER_ERRORS = {
    "502": error("Upstream unreachable or failed"),
    "503": error(
        "No provider key configured (the message names OPENAI_API_KEY), or the client key store or "
        "the limits store is unavailable"
    ),
    "504": error("Upstream slower than AIPROXY_UPSTREAM_TIMEOUT"),
}
# Relayed routes answer any status the upstream answered, with its body (OpenAI-shaped).
RELAYED = {
    "429": error(
        "Over the client's limits, or the upstream's rate limit relayed", **{"Retry-After": RETRY_AFTER}
    ),
    "401": error(
        "Missing or wrong client key (with WWW-Authenticate), or the upstream refused the key it was sent",
        **{"WWW-Authenticate": www_authenticate(required=False)},
    ),
    "default": error("The upstream's own error status and body, relayed", **{"Retry-After": RETRY_AFTER}),
}


def responses(ok: dict[str, Any], *more: dict[str, Any]) -> dict[str, Any]:
    """The 200 answer, the pipeline's errors, then `more` (later sets win)."""
    merged = {"200": ok, **PIPELINE_ERRORS}
    for answers in more:
        merged.update(answers)
    return merged
