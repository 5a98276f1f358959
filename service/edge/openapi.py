"""The OpenAPI 3.1 description of every route, served at `GET /openapi.json`.

A test checks that every route the app registers is described here, so the two stay in step, and
another runs schemathesis against the real server with this document
(tests/e2e/test_openapi_conformance.py): every status, content type, header and body the server
answers must be described, and the field constraints must be the ones `service.assessment.request`
applies, no looser and no stricter.
The OpenAI-compatible bodies are described loosely (`additionalProperties: true`): the proxy
relays them unchanged and the OpenAI API reference is their real contract.

Patterns are written to mean the same in ECMA 262 and Python regular expressions.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from service.assessment.request import (
    MAX_CODE_CHARS,
    MAX_EXAMPLES,
    MAX_RESPONSES,
    MAX_RUBRIC_ROWS,
    MAX_STUDENT_ID,
    RESPONSE_TYPES,
)

blueprint = Blueprint("openapi", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _header(description: str, schema: dict, *, required: bool = False) -> dict:
    return {"description": description, "required": required, "schema": schema}


_REQUEST_ID = {
    "X-Request-Id": _header(
        "The request's id (the client's own X-Request-Id when it sent a short, plain one)",
        {"type": "string", "minLength": 1},
        required=True,
    )
}


def _error(description: str, **headers: dict) -> dict:
    return {
        "description": description,
        "headers": {**_REQUEST_ID, **headers},
        "content": {"application/json": {"schema": _ref("Error")}},
    }


def _json(description: str, schema: dict | None = None) -> dict:
    return {
        "description": description,
        "headers": _REQUEST_ID,
        "content": {"application/json": {"schema": schema or _ref("Object")}},
    }


def _retry_after(*, required: bool = False) -> dict:
    return _header(
        "Seconds to wait before trying again", {"type": "string", "pattern": "^[0-9]+$"}, required=required
    )


def _www_authenticate(*, required: bool = True) -> dict:
    return _header(
        "The scheme the client key is sent with", {"type": "string", "const": "Bearer"}, required=required
    )


_RETRY_AFTER = _retry_after()

# What the request pipeline (service/edge/pipeline.py, service/edge/bodies.py) and the client gate may answer
# on any route that needs a client key, before the route itself runs.
_PIPELINE_ERRORS = {
    "400": _error("The request body ended before its Content-Length, or its chunked framing cannot be read"),
    "401": _error(
        "Missing or wrong client key (when a key store is configured)",
        **{"WWW-Authenticate": _www_authenticate()},
    ),
    "408": _error("The request body did not arrive within AIPROXY_BODY_TIMEOUT"),
    "413": _error("The request body is over AIPROXY_MAX_BODY_BYTES"),
    "429": _error("Over the client's limits", **{"Retry-After": _RETRY_AFTER}),
    "503": _error("The client key store or the limits store is unavailable"),
}
_PROVIDER_ERRORS = {
    "502": _error("Upstream unreachable or failed"),
    "503": _error(
        "No provider key configured (the message names OPENAI_API_KEY), or the client key store or "
        "the limits store is unavailable"
    ),
    "504": _error("Upstream slower than AIPROXY_UPSTREAM_TIMEOUT"),
}
# Relayed routes answer any status the upstream answered, with its body (OpenAI-shaped).
_RELAYED = {
    "429": _error(
        "Over the client's limits, or the upstream's rate limit relayed", **{"Retry-After": _RETRY_AFTER}
    ),
    "401": _error(
        "Missing or wrong client key (with WWW-Authenticate), or the upstream refused the key it was sent",
        **{"WWW-Authenticate": _www_authenticate(required=False)},
    ),
    "default": _error("The upstream's own error status and body, relayed", **{"Retry-After": _RETRY_AFTER}),
}


def _responses(ok: dict, *more: dict) -> dict:
    merged = {"200": ok, **_PIPELINE_ERRORS}
    for responses in more:
        merged.update(responses)
    return merged


# How a relayed request's `model` is routed (service.gateway.routing, docs/routing.md).
_ROUTING = (
    "The body's `model` picks who answers: `bedrock/<id>` (or `bedrock.<id>`) Amazon Bedrock, "
    "`<upstream>/<model>` a named upstream of AIPROXY_UPSTREAMS, an alias of AIPROXY_MODEL_ALIASES "
    "(a model group is tried deployment by deployment on 429, 5xx, a timeout or an unreachable "
    "provider, a failed deployment passed over for a while), anything else the default upstream. "
    "`x-aiproxy-deployment` names the deployment that answered."
)
_ANSWER_HEADERS = {
    "x-aiproxy-deployment": _header(
        "The deployment that answered: `<upstream>/<model>` or `bedrock/<id>` (what no header can "
        "carry, such as a line break or a non-ASCII letter, as its backslash escape: `\\u2603`)",
        {"type": "string"},
    ),
    **{
        f"x-ratelimit-{what}": _header(
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


def _relayed_post(summary: str, example: dict, *, streams: bool) -> dict:
    ok = _json("The upstream's answer, unchanged")
    ok["headers"] = {**ok["headers"], **_ANSWER_HEADERS}
    if streams:
        ok["description"] += '; with "stream": true, Server-Sent Events ending with `data: [DONE]`'
        ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "description": _ROUTING,
            "tags": ["OpenAI-compatible"],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("Object"), "example": example}},
            },
            "responses": _responses(
                ok,
                {
                    "400": _error(
                        "Body empty, not JSON or not a JSON object; `model` names an upstream that is not "
                        "configured; a client with a budget asks for a model without a price; or the "
                        "upstream rejected the request"
                    )
                },
                _PROVIDER_ERRORS,
                _RELAYED,
            ),
        }
    }


# --- assessment fields, as service.assessment.request reads them -------------------------------------

# White space that Python's str.strip() removes and both regex flavours know, for the fields read
# after stripping: ASCII's, and the Unicode spaces.
_WS = r"[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\x1c-\x1f]"
_TRUE_FALSE = "|".join(
    "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in word)
    for word in ("true", "false", "yes", "no", "on", "off")
)
_WHOLE = rf"\+?0*([1-9]|{MAX_RESPONSES})"
# 0 to 2 in decimal notation (exponents are read too, but not described).
_TEMPERATURE = r"\+?(0*[01](\.[0-9]*)?|0*\.[0-9]+|0*2(\.0*)?)|-(0+(\.0*)?|0*\.0+)"
_NOT_BLANK = r"\S"
# A printable character other than a space (Python's str.isprintable() also refuses the format,
# private-use and unassigned characters, which no pattern lists).
_PRINTABLE = r"[^\s\x00-\x1f\x7f-\x9f]"


def _blank_or(pattern: str) -> str:
    """Text that is `pattern` with white space around it, or only white space (the default)."""
    return rf"^{_WS}*({pattern})?{_WS}*$"


# Few-shot turns: [example_code, example_answer] pairs of text.
_EXAMPLES = {
    "type": "array",
    "maxItems": MAX_EXAMPLES,
    "items": {
        "type": "array",
        "prefixItems": [{"type": "string", "maxLength": MAX_CODE_CHARS}, {"type": "string"}],
        "minItems": 2,
        "maxItems": 2,
    },
}
_STUDENT_ID = rf"{_PRINTABLE}(( |{_PRINTABLE}){{0,{MAX_STUDENT_ID - 2}}}{_PRINTABLE})?"

_TEXT_FIELDS: dict[str, dict] = {
    "code": {
        "type": "string",
        "maxLength": MAX_CODE_CHARS,
        "description": "The student program (JavaScript); may be empty",
    },
    "prompt": {
        "type": "string",
        "pattern": _NOT_BLANK,
        "description": "System prompt for the grader; not blank",
    },
    "rubric": {
        "type": "string",
        "format": "rubric-csv",
        "description": "CSV with a header row holding a `Key Concept` column (any case, any position), "
        f"then one row per key concept (at most {MAX_RUBRIC_ROWS}, none twice); a quoted cell must end",
        "examples": ["Key Concept,Extensive Evidence,No Evidence\nVariables,Several variables change,None\n"],
    },
    "examples": {
        "type": "string",
        "format": "examples-json",
        "contentMediaType": "application/json",
        "contentSchema": _EXAMPLES,
        "description": "JSON text of the examples (below); blank for none",
    },
    "model": {"type": "string", "description": "Upstream model (default: AIPROXY_ASSESSMENT_MODEL)"},
    "api-key": {
        "type": "string",
        "pattern": _blank_or("[!-~]+"),
        "description": "Provider key to use instead of the configured one: one word of printable ASCII",
    },
    "remove-comments": {
        "type": "string",
        "pattern": _blank_or(f"[01]|{_TRUE_FALSE}"),
        "description": "1, true, yes, on (or 0, false, no, off, blank); any case",
        "default": "0",
    },
    "num-responses": {
        "type": "string",
        "pattern": _blank_or(_WHOLE),
        "description": f"Answers that vote: a whole number from 1 to {MAX_RESPONSES} in ASCII digits",
        "default": "1",
    },
    "temperature": {
        "type": "string",
        "pattern": _blank_or(_TEMPERATURE),
        "description": "A number from 0 to 2",
        "default": "0.2",
    },
    "student-id": {
        "type": "string",
        "pattern": rf"^{_WS}*{_STUDENT_ID}{_WS}*$",
        "description": f"Who the program is from: printable text of at most {MAX_STUDENT_ID} characters "
        "once trimmed, not blank",
        "default": "student",
    },
    "response-type": {
        "type": "string",
        "pattern": _blank_or("[Tt][Ss][Vv]|[Jj][Ss][Oo][Nn]"),
        "description": f"The table the model is asked for: {' or '.join(RESPONSE_TYPES)}",
        "default": "tsv",
    },
}
# In a JSON body the same fields may also be JSON values; null is the default, as absent is.
_JSON_FIELDS: dict[str, dict] = {
    **_TEXT_FIELDS,
    "examples": {"oneOf": [{**_EXAMPLES, "type": ["array", "null"]}, _TEXT_FIELDS["examples"]]},
    "model": {**_TEXT_FIELDS["model"], "type": ["string", "null"]},
    "api-key": {**_TEXT_FIELDS["api-key"], "type": ["string", "null"]},
    "remove-comments": {
        "oneOf": [_TEXT_FIELDS["remove-comments"], {"type": ["boolean", "null"]}, {"enum": [0, 1]}],
        "description": _TEXT_FIELDS["remove-comments"]["description"],
    },
    "num-responses": {
        "oneOf": [
            _TEXT_FIELDS["num-responses"],
            {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_RESPONSES},
        ],
        "description": _TEXT_FIELDS["num-responses"]["description"],
    },
    "temperature": {
        "oneOf": [_TEXT_FIELDS["temperature"], {"type": ["number", "null"], "minimum": 0, "maximum": 2}],
        "description": _TEXT_FIELDS["temperature"]["description"],
    },
    "student-id": {"oneOf": [_TEXT_FIELDS["student-id"], {"type": ["number", "null"]}]},
    "response-type": {**_TEXT_FIELDS["response-type"], "type": ["string", "null"]},
}
_IGNORED = {
    "description": "Accepted from the original service's clients and not acted on (metadata lists it)"
}
for _name in ("code-feature-extractor", "lesson"):
    _TEXT_FIELDS[_name] = {**_IGNORED, "type": "string"}
    _JSON_FIELDS[_name] = _IGNORED

_GRADED = ("code", "prompt", "rubric")
_OPTIONS = tuple(name for name in _TEXT_FIELDS if name not in (*_GRADED, "examples"))


def _fields(schemas: dict[str, dict], names: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": {n: schemas[n] for n in names}}
    if required:
        schema["required"] = list(required)
    return schema


def _body(names: tuple[str, ...], *, required: tuple[str, ...] = ()) -> dict:
    text = _fields(_TEXT_FIELDS, names, required)
    return {
        "required": bool(required),
        "content": {
            "application/x-www-form-urlencoded": {"schema": text},
            "multipart/form-data": {"schema": text},
            "application/json": {"schema": _fields(_JSON_FIELDS, names, required)},
        },
    }


_ASSESSMENT_RESPONSES = _responses(
    _json("Graded rubric rows", _ref("Assessment")),
    {
        "400": _error(
            "A field is missing or unusable (`param` names it), or the provider rejected the request"
        ),
        "429": _error(
            "Over the client's limits, or the provider is rate limiting", **{"Retry-After": _RETRY_AFTER}
        ),
    },
    _PROVIDER_ERRORS,
    {"502": _error("No valid answer among the model's, or the provider failed")},
)


def _query(names: tuple[str, ...]) -> list[dict]:
    return [{"name": name, "in": "query", "required": False, "schema": _TEXT_FIELDS[name]} for name in names]


def _sample_route(summary: str) -> dict:
    get = {
        "summary": summary,
        "tags": ["Assessment"],
        "parameters": _query(_OPTIONS),
        "responses": _ASSESSMENT_RESPONSES,
    }
    post = {
        **{key: value for key, value in get.items() if key != "parameters"},
        "description": "The fields come in the body, or in the query string (the body wins).",
        "requestBody": _body(_OPTIONS),
    }
    return {"get": get, "post": post}


def _diagnostic(summary: str, responses: dict) -> dict:
    return {"get": {"summary": summary, "tags": ["Status"], "responses": {**_PIPELINE_ERRORS, **responses}}}


def build_document() -> dict[str, Any]:
    sample = _sample_route("Grade the sample program against the sample prompt and rubric")
    blank = _sample_route("Grade an empty program against the sample rubric (no LLM call)")
    test_openai_get = {
        "summary": 'Send a tiny "Hello world" chat to the upstream',
        "tags": ["Legacy"],
        "parameters": _query(("model", "api-key")),
        "responses": _responses(
            _json("The assistant message", _ref("Message")),
            {
                "400": _error(
                    "A parameter is unusable (`param` names it), or the upstream rejected the request"
                )
            },
            _PROVIDER_ERRORS,
            _RELAYED,
        ),
    }
    test_openai_post = {
        **{key: value for key, value in test_openai_get.items() if key != "parameters"},
        "description": "The parameters come in the body, or in the query string (the body wins).",
        "requestBody": _body(("model", "api-key")),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI Proxy",
            "version": "1",
            "description": "OpenAI-compatible LLM gateway with rubric assessment. See API.md. "
            "Every answer carries X-Request-Id; every error is JSON in the OpenAI shape, also for "
            "requests the HTTP parser refuses (400, 414, 431, 501) and for methods a path does not "
            "take (405, with Allow).",
        },
        "components": {
            "securitySchemes": {
                "clientKey": {"type": "http", "scheme": "bearer"},
                "metricsKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "AIPROXY_METRICS_KEY, not a client key",
                },
            },
            "schemas": {
                "Object": {"type": "object", "additionalProperties": True},
                "Limits": {
                    "type": "object",
                    "required": ["client", "limits", "usage", "remaining"],
                    "properties": {
                        "client": {
                            "type": ["string", "null"],
                            "description": "null when the proxy runs open",
                        },
                        "limits": {
                            "type": ["object", "null"],
                            "description": "rpm, tpm, max_concurrent, budgets",
                        },
                        "usage": {
                            "type": ["object", "null"],
                            "description": "the last minute, in flight, spent",
                        },
                        "remaining": {"type": ["object", "null"]},
                        "budget_resets": {
                            "type": "object",
                            "description": "ISO times the UTC day and month end",
                        },
                        "shared": {"type": "boolean", "description": "counted by every process and task"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["message", "type"],
                            "properties": {
                                "message": {"type": "string"},
                                "type": {"type": "string"},
                                "param": {"type": ["string", "null"]},
                                "code": {"type": ["string", "integer", "null"]},
                            },
                        }
                    },
                },
                "Message": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {"role": {"type": "string"}, "content": {"type": ["string", "null"]}},
                },
                "Assessment": {
                    "type": "object",
                    "required": ["metadata", "data"],
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "required": ["agent", "time", "student_id", "usage", "request"],
                            "properties": {
                                "agent": {"type": "string", "enum": ["openai", "bedrock", "static"]},
                                "time": {"type": "number", "minimum": 0},
                                "student_id": {"type": "string"},
                                "usage": {"type": "object"},
                                "request": {
                                    "type": ["object", "null"],
                                    "description": "The chat-completions body sent; null when the "
                                    "program was empty and no model was called (agent `static`)",
                                },
                                "response_type": {"type": "string", "enum": list(RESPONSE_TYPES)},
                                "ignored_fields": {"type": "array", "items": {"type": "string"}},
                            },
                        },
                        "data": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["Key Concept", "Observations", "Grade", "Reason", "Votes"],
                                "properties": {
                                    "Key Concept": {"type": "string"},
                                    "Observations": {"type": "string"},
                                    "Grade": {
                                        "type": "string",
                                        "enum": [
                                            "Extensive Evidence",
                                            "Convincing Evidence",
                                            "Limited Evidence",
                                            "No Evidence",
                                        ],
                                    },
                                    "Reason": {"type": "string"},
                                    "Votes": {"type": "array", "items": {"type": "string"}},
                                },
                            },
                        },
                    },
                },
            },
        },
        "security": [{"clientKey": []}],
        "paths": {
            "/": {
                "get": {
                    "summary": "Health check (plain text, no authentication)",
                    "tags": ["Status"],
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "headers": _REQUEST_ID,
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **{s: _PIPELINE_ERRORS[s] for s in ("400", "408", "413")},
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "The server's metrics in Prometheus' text format, summed over its workers",
                    "tags": ["Status"],
                    "security": [{"metricsKey": []}],
                    "responses": {
                        "200": {
                            "description": "Prometheus text format",
                            "headers": _REQUEST_ID,
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _error("Missing or wrong metrics key"),
                        "404": _error("No AIPROXY_METRICS_KEY configured: the route is off"),
                        **{s: _PIPELINE_ERRORS[s] for s in ("400", "408", "413")},
                    },
                }
            },
            "/openapi.json": _diagnostic("This document", {"200": _json("OpenAPI")}),
            "/test": _diagnostic("Answers {}", {"200": _json("{}")}),
            "/test/exception": _diagnostic("Raises on purpose", {"500": _error("Reported error")}),
            "/test/error": _diagnostic("Logs at ERROR", {"200": _json("{}")}),
            "/test/critical": _diagnostic("Logs at CRITICAL", {"200": _json("{}")}),
            "/test/429": _diagnostic(
                "Answers 429 with Retry-After",
                {"429": _error("Rate limited", **{"Retry-After": _retry_after(required=True)})},
            ),
            "/v1/chat/completions": _relayed_post(
                "Chat completion (streams with stream: true; bedrock/... models: Amazon Bedrock)",
                {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello"}]},
                streams=True,
            ),
            "/v1/completions": _relayed_post(
                "Legacy text completion",
                {"model": "gpt-3.5-turbo-instruct", "prompt": "Once upon a time", "max_tokens": 20},
                streams=True,
            ),
            "/v1/responses": _relayed_post(
                "Responses API", {"model": "gpt-4o-mini", "input": "Say hello"}, streams=True
            ),
            "/v1/embeddings": _relayed_post(
                "Embeddings", {"model": "text-embedding-3-small", "input": ["first text"]}, streams=False
            ),
            "/v1/moderations": _relayed_post(
                "Moderation", {"model": "omni-moderation-latest", "input": "some text"}, streams=False
            ),
            "/v1/models": {
                "get": {
                    "summary": "List the upstream's models, then the configured Bedrock models and aliases",
                    "tags": ["OpenAI-compatible"],
                    "responses": _responses(_json("Model list"), _PROVIDER_ERRORS, _RELAYED),
                }
            },
            "/v1/limits": {
                "get": {
                    "summary": "The calling client's own limits, what it has used of them, and what is left",
                    "tags": ["Client"],
                    "responses": _responses(_json("Limits, usage and what remains", _ref("Limits"))),
                }
            },
            "/v1/signing-keys": {
                "get": {
                    "summary": "The public keys signed answers verify with (JSON Web Key Set, Ed25519)",
                    "tags": ["Client"],
                    "security": [],
                    "responses": {
                        "200": _json("JSON Web Key Set: keys[] with kty OKP, crv Ed25519, kid, x"),
                    },
                }
            },
            "/v1/models/{model_id}": {
                "get": {
                    "summary": "One model",
                    "tags": ["OpenAI-compatible"],
                    "parameters": [
                        {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "responses": _responses(
                        _json("Model"),
                        {"404": _error("No such model")},
                        _PROVIDER_ERRORS,
                        _RELAYED,
                    ),
                }
            },
            "/openai/models": {
                "get": {
                    "summary": "The upstream's models as a bare list (the data array)",
                    "tags": ["Legacy"],
                    "responses": _responses(
                        _json("Models", {"type": "array", "items": _ref("Object")}),
                        _PROVIDER_ERRORS,
                        _RELAYED,
                    ),
                }
            },
            "/test/openai": {"get": test_openai_get, "post": test_openai_post},
            "/assessment": {
                "post": {
                    "summary": "Grade a student program against a rubric",
                    "tags": ["Assessment"],
                    "requestBody": _body((*_GRADED, "examples", *_OPTIONS), required=_GRADED),
                    "responses": _ASSESSMENT_RESPONSES,
                }
            },
            "/test/assessment": sample,
            "/test/assessment/blank": blank,
        },
    }


_DOCUMENT = build_document()


@blueprint.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(_DOCUMENT)
