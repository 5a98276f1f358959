"""`POST /v1/safety/check` (service.edge.routes.safety, docs/safety.md): a text checked alone."""

from __future__ import annotations

from typing import Any

from service.edge.openapi.common import json_answer, responses

VERDICT = {
    "type": "object",
    "required": ["flagged", "blocked_by", "details", "pii"],
    "properties": {
        "flagged": {"type": "boolean"},
        "blocked_by": {"type": ["string", "null"]},
        "details": {"type": "object"},
        "pii": {"type": "array", "items": {"type": "string", "enum": ["email", "address", "phone"]}},
    },
}


def paths() -> dict[str, Any]:
    check = {
        "summary": "Check a text alone with a safety policy (the client's own, or one named)",
        "tags": ["Client"],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["text"],
                        "additionalProperties": False,
                        "properties": {
                            "text": {"type": "string"},
                            "role": {"type": "string", "enum": ["user", "assistant"], "default": "user"},
                            "policy": {"type": "string"},
                        },
                    },
                    "example": {"text": "Is this fine for class?", "role": "user"},
                }
            },
        },
        "responses": responses(
            json_answer(
                "The verdict: which check flagged (if any), its details, and the personal data found", VERDICT
            )
        ),
    }
    return {"/v1/safety/check": {"post": check}}
