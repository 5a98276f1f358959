"""The fields of a request that may arrive as a query string, a form, or a JSON object body.

Used by the routes that accept parameters in any of those shapes (`/assessment*`, `/test/openai`),
so they read and refuse them the same way.
"""

from __future__ import annotations

from typing import Any

from flask import request

from service.errors import ApiError
from service.upstream import usable_key


def request_fields(*, uploads: bool = False) -> dict[str, Any]:
    """Query string, then a form (with `uploads`, multipart files as UTF-8 text) or a JSON object."""
    fields: dict[str, Any] = dict(request.args.items())
    if request.is_json:
        if request.get_data():
            body = request.get_json(silent=True)
            if body is None:
                raise ApiError(400, "The request body is not valid JSON.")
            if not isinstance(body, dict):
                raise ApiError(400, "The JSON body must be an object of named fields.")
            fields.update(body)
        return fields
    fields.update(request.form.items())
    if uploads:
        for name, upload in request.files.items():
            try:
                fields[name] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, f"The uploaded '{name}' is not UTF-8 text.", param=name) from None
    return fields


def provider_key_field(fields: dict[str, Any]) -> str | None:
    """The optional 'api-key' field (a provider key the caller brings), or None when absent."""
    value = fields.get("api-key")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ApiError(400, "'api-key' must be text.", param="api-key")
    value = value.strip()
    if value and not usable_key(value):
        # Never echo the value: it is a secret, sent perhaps by mistake.
        raise ApiError(400, "'api-key' must be one word of printable ASCII characters.", param="api-key")
    return value or None
