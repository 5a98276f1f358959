"""The component schemas the OpenAPI document's operations refer to (`#/components/schemas/...`):
the error shape, the limits, the assistant message and the graded assessment."""

from __future__ import annotations

from service.assessment.fields import RESPONSE_TYPES

SECURITY_SCHEMES = {
    "clientKey": {"type": "http", "scheme": "bearer"},
    "metricsKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "AIPROXY_METRICS_KEY, not a client key",
    },
}

SCHEMAS = {
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
}
