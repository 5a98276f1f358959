"""The OpenAPI 3.1 description of every route, served at `GET /openapi.json`.

A test checks that every route the app registers is described here, so the two stay in step.
The OpenAI-compatible bodies are described loosely (`additionalProperties: true`): the proxy
relays them unchanged and the OpenAI API reference is their real contract.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

blueprint = Blueprint("openapi", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


def _json(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema or _ref("Object")}}}


_AUTH_ERRORS = {
    "401": _error("Missing or wrong client key (when a key store is configured)"),
    "429": _error("Over the client's limits, or the upstream's rate limit (with Retry-After)"),
}
_UPSTREAM_ERRORS = {
    "400": _error("Body not a JSON object, or the upstream rejected the request (its error relayed)"),
    **_AUTH_ERRORS,
    "502": _error("Upstream unreachable or failed"),
    "503": _error("No provider key configured (the message names OPENAI_API_KEY)"),
    "504": _error("Upstream slower than AIPROXY_UPSTREAM_TIMEOUT"),
}


def _relayed_post(summary: str, *, streams: bool) -> dict:
    ok = {
        "description": "The upstream's answer, unchanged",
        "content": {"application/json": {"schema": _ref("Object")}},
    }
    if streams:
        ok["description"] += '; with "stream": true, Server-Sent Events ending with `data: [DONE]`'
        ok["content"]["text/event-stream"] = {"schema": {"type": "string"}}
    return {
        "post": {
            "summary": summary,
            "tags": ["OpenAI-compatible"],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("Object")}}},
            "responses": {"200": ok, **_UPSTREAM_ERRORS},
        }
    }


_ASSESSMENT_FIELDS: dict[str, dict] = {
    "code": {
        "type": "string",
        "maxLength": 200000,
        "description": "The student program (JavaScript); may be empty",
    },
    "prompt": {"type": "string", "description": "System prompt for the grader; non-empty"},
    "rubric": {"type": "string", "description": "CSV with a header row and a `Key Concept` column"},
    "examples": {
        "oneOf": [
            {"type": "string", "description": "the array below, as JSON text (forms)"},
            {
                "type": "array",
                "items": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 2},
            },
        ],
        "description": "[example_code, example_answer] pairs (few-shot turns)",
        "default": "[]",
    },
    "model": {"type": "string", "description": "Upstream model (default: AIPROXY_ASSESSMENT_MODEL)"},
    "api-key": {"type": "string", "description": "Provider key to use instead of the configured one"},
    "remove-comments": {"type": "string", "enum": ["0", "1", "false", "true"], "default": "0"},
    "num-responses": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2, "default": 0.2},
    "student-id": {"type": "string", "default": "student"},
}
_ASSESSMENT_INPUT = {
    "type": "object",
    "required": ["code", "prompt", "rubric"],
    "properties": _ASSESSMENT_FIELDS,
}
_ASSESSMENT_BODY = {
    "required": True,
    "content": {
        "application/x-www-form-urlencoded": {"schema": _ASSESSMENT_INPUT},
        "multipart/form-data": {"schema": _ASSESSMENT_INPUT},
        "application/json": {"schema": _ASSESSMENT_INPUT},
    },
}
_ASSESSMENT_RESPONSES = {
    "200": _json("Graded rubric rows", _ref("Assessment")),
    **_UPSTREAM_ERRORS,
    "400": _error("A field is missing or unparseable (named), or the upstream rejected the request"),
    "502": _error("No valid answer among the model's, or the upstream failed"),
}
_SAMPLE_PARAMETERS = [
    {"name": name, "in": "query", "required": False, "schema": _ASSESSMENT_FIELDS[name]}
    for name in ("model", "api-key", "num-responses", "temperature", "remove-comments", "student-id")
]


def _sample_route(summary: str) -> dict:
    operation = {
        "summary": summary,
        "tags": ["Assessment"],
        "parameters": _SAMPLE_PARAMETERS,
        "responses": _ASSESSMENT_RESPONSES,
    }
    return {"get": operation, "post": dict(operation)}


def _diagnostic(summary: str, responses: dict) -> dict:
    return {"get": {"summary": summary, "tags": ["Status"], "responses": responses}}


def build_document() -> dict[str, Any]:
    sample = _sample_route("Grade the sample program against the sample prompt and rubric")
    blank = _sample_route("Grade an empty program against the sample rubric (no LLM call)")
    test_openai_parameters = [
        {"name": "model", "in": "query", "schema": {"type": "string"}},
        {"name": "api-key", "in": "query", "schema": {"type": "string"}, "description": "Provider key"},
    ]
    test_openai = {
        "summary": 'Send a tiny "Hello world" chat to the upstream',
        "tags": ["Legacy"],
        "parameters": test_openai_parameters,
        "responses": {"200": _json("The assistant message", _ref("Message")), **_UPSTREAM_ERRORS},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "AI Proxy",
            "version": "1",
            "description": "OpenAI-compatible LLM gateway with rubric assessment. See API.md.",
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
                    "properties": {"role": {"type": "string"}, "content": {"type": ["string", "null"]}},
                },
                "Assessment": {
                    "type": "object",
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "properties": {
                                "agent": {"type": "string", "enum": ["openai", "static"]},
                                "time": {"type": "number"},
                                "student_id": {"type": "string"},
                                "usage": {"type": "object"},
                                "request": {"type": "object"},
                            },
                        },
                        "data": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "Key Concept": {"type": "string"},
                                    "Observations": {"type": "string"},
                                    "Grade": {"type": "string"},
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
                    "responses": {"200": {"description": "OK", "content": {"text/plain": {}}}},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "The server's metrics in Prometheus' text format, summed over its workers",
                    "tags": ["Status"],
                    "security": [{"metricsKey": []}],
                    "responses": {
                        "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
                        "401": _error("Missing or wrong metrics key"),
                        "404": _error("No AIPROXY_METRICS_KEY configured: the route is off"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "tags": ["Status"],
                    "responses": {"200": _json("OpenAPI")},
                }
            },
            "/test": _diagnostic("Answers {}", {"200": _json("{}")}),
            "/test/exception": _diagnostic("Raises on purpose", {"500": _error("Reported error")}),
            "/test/error": _diagnostic("Logs at ERROR", {"200": _json("{}")}),
            "/test/critical": _diagnostic("Logs at CRITICAL", {"200": _json("{}")}),
            "/test/429": _diagnostic("Answers 429 with Retry-After", {"429": _error("Rate limited")}),
            "/v1/chat/completions": _relayed_post(
                "Chat completion (streams with stream: true; bedrock/... models: Amazon Bedrock)",
                streams=True,
            ),
            "/v1/completions": _relayed_post("Legacy text completion", streams=True),
            "/v1/responses": _relayed_post("Responses API", streams=True),
            "/v1/embeddings": _relayed_post("Embeddings", streams=False),
            "/v1/moderations": _relayed_post("Moderation", streams=False),
            "/v1/models": {
                "get": {
                    "summary": "List the upstream's models, then the configured Bedrock models and aliases",
                    "tags": ["OpenAI-compatible"],
                    "responses": {"200": _json("Model list"), **_UPSTREAM_ERRORS},
                }
            },
            "/v1/limits": {
                "get": {
                    "summary": "The calling client's own limits, what it has used of them, and what is left",
                    "tags": ["Client"],
                    "responses": {
                        "200": _json("Limits, usage and what remains", _ref("Limits")),
                        **_AUTH_ERRORS,
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
                    "responses": {"200": _json("Model"), "404": _error("No such model"), **_UPSTREAM_ERRORS},
                }
            },
            "/openai/models": {
                "get": {
                    "summary": "The upstream's models as a bare list (the data array)",
                    "tags": ["Legacy"],
                    "responses": {
                        "200": _json("Models", {"type": "array", "items": _ref("Object")}),
                        **_UPSTREAM_ERRORS,
                    },
                }
            },
            "/test/openai": {"get": test_openai, "post": test_openai},
            "/assessment": {
                "post": {
                    "summary": "Grade a student program against a rubric",
                    "tags": ["Assessment"],
                    "requestBody": _ASSESSMENT_BODY,
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
