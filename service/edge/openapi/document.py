"""The whole OpenAPI document: its info, components and every path, the status routes described
here and the others by their modules (`relayed`, `assessment`)."""

from __future__ import annotations

from typing import Any

from service.edge.openapi import assessment, media, relayed, safety
from service.edge.openapi.common import (
    PIPELINE_ERRORS,
    REQUEST_ID,
    error,
    json_answer,
    ref,
    responses,
    retry_after,
)
from service.edge.openapi.components import SCHEMAS, SECURITY_SCHEMES

# The open routes never read a body, but the pipeline still bounds it.
_BODY_ERRORS = {status: PIPELINE_ERRORS[status] for status in ("400", "408", "413")}


def _plain_text(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": REQUEST_ID,
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }


def _diagnostic(summary: str, answers: dict[str, Any]) -> dict[str, Any]:
    return {"get": {"summary": summary, "tags": ["Status"], "responses": {**PIPELINE_ERRORS, **answers}}}


def status_paths() -> dict[str, Any]:
    return {
        "/": {
            "get": {
                "summary": "Health check (plain text, no authentication)",
                "tags": ["Status"],
                "security": [],
                "responses": {"200": _plain_text("OK"), **_BODY_ERRORS},
            }
        },
        "/metrics": {
            "get": {
                "summary": "The server's metrics in Prometheus' text format, summed over its workers",
                "tags": ["Status"],
                "security": [{"metricsKey": []}],
                "responses": {
                    "200": _plain_text("Prometheus text format"),
                    "401": error("Missing or wrong metrics key"),
                    "404": error("No AIPROXY_METRICS_KEY configured: the route is off"),
                    **_BODY_ERRORS,
                },
            }
        },
        "/openapi.json": _diagnostic("This document", {"200": json_answer("OpenAPI")}),
        "/test": _diagnostic("Answers {}", {"200": json_answer("{}")}),
        "/test/exception": _diagnostic("Raises on purpose", {"500": error("Reported error")}),
        "/test/error": _diagnostic("Logs at ERROR", {"200": json_answer("{}")}),
        "/test/critical": _diagnostic("Logs at CRITICAL", {"200": json_answer("{}")}),
        "/test/429": _diagnostic(
            "Answers 429 with Retry-After",
            {"429": error("Rate limited", **{"Retry-After": retry_after(required=True)})},
        ),
        "/v1/signing-keys": {
            "get": {
                "summary": "The public keys signed answers verify with (JSON Web Key Set, Ed25519)",
                "tags": ["Client"],
                "security": [],
                "responses": {
                    "200": json_answer("JSON Web Key Set: keys[] with kty OKP, crv Ed25519, kid, x")
                },
            }
        },
        "/v1/limits": {
            "get": {
                "summary": "The calling client's own limits, what it has used of them, and what is left",
                "tags": ["Client"],
                "responses": responses(json_answer("Limits, usage and what remains", ref("Limits"))),
            }
        },
    }


def build_document() -> dict[str, Any]:
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
        "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": SCHEMAS},
        "security": [{"clientKey": []}],
        "paths": {
            **status_paths(),
            **relayed.paths(),
            **safety.paths(),
            **media.paths(),
            **assessment.paths(),
        },
    }
