"""The assessment operations (`POST /assessment`, the sample routes `/test/assessment*`), their
fields described from the declarations the request parser reads them with
(`service.assessment.fields`): the same names, defaults, limits and descriptions."""

from __future__ import annotations

from typing import Any

from service.assessment.fields import EXAMPLES, GRADED, OPTIONS, Field
from service.edge.openapi.common import PROVIDER_ERRORS, RETRY_AFTER, error, json_answer, ref, responses


def _object(fields: tuple[Field, ...], schema_of: str, required: tuple[Field, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {field.name: getattr(field, schema_of)() for field in fields},
    }
    if required:
        schema["required"] = [field.name for field in required]
    return schema


def body(fields: tuple[Field, ...], *, required: tuple[Field, ...] = ()) -> dict[str, Any]:
    """A request body of `fields`: as a form or multipart (text) or as JSON (JSON values too)."""
    text = _object(fields, "text_schema", required)
    return {
        "required": bool(required),
        "content": {
            "application/x-www-form-urlencoded": {"schema": text},
            "multipart/form-data": {"schema": text},
            "application/json": {"schema": _object(fields, "json_schema", required)},
        },
    }


def query(fields: tuple[Field, ...]) -> list[dict[str, Any]]:
    return [
        {"name": field.name, "in": "query", "required": False, "schema": field.text_schema()}
        for field in fields
    ]


RESPONSES = responses(
    json_answer("Graded rubric rows", ref("Assessment")),
    {
        "400": error(
            "A field is missing or unusable (`param` names it), or the provider rejected the request"
        ),
        "429": error(
            "Over the client's limits, or the provider is rate limiting", **{"Retry-After": RETRY_AFTER}
        ),
    },
    PROVIDER_ERRORS,
    {"502": error("No valid answer among the model's, or the provider failed")},
)


def sample_route(summary: str) -> dict[str, Any]:
    """A sample route grades the shipped program, prompt and rubric: only the options are read."""
    get = {"summary": summary, "tags": ["Assessment"], "parameters": query(OPTIONS), "responses": RESPONSES}
    post = {
        **{key: value for key, value in get.items() if key != "parameters"},
        "description": "The fields come in the body, or in the query string (the body wins).",
        "requestBody": body(OPTIONS),
    }
    return {"get": get, "post": post}


def paths() -> dict[str, Any]:
    return {
        "/assessment": {
            "post": {
                "summary": "Grade a student program against a rubric",
                "tags": ["Assessment"],
                "requestBody": body((*GRADED, EXAMPLES, *OPTIONS), required=GRADED),
                "responses": RESPONSES,
            }
        },
        "/test/assessment": sample_route("Grade the sample program against the sample prompt and rubric"),
        "/test/assessment/blank": sample_route(
            "Grade an empty program against the sample rubric (no LLM call)"
        ),
    }
