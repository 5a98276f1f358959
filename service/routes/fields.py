"""The fields of a request that may arrive as a query string, a form, or a JSON object body.

Used by the routes that accept parameters in any of those shapes (`/assessment*`, `/test/openai`),
so they read and refuse them the same way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from service.bodies import RAW_BODY
from service.errors import RequestRejected


def request_fields(*, uploads: bool = False) -> dict[str, Any]:
    """Query string, then a form (with `uploads`, multipart files as UTF-8 text) or a JSON object."""
    fields: dict[str, Any] = dict(request.args.items())
    if request.is_json:
        if request.get_data():
            body = request.get_json(silent=True)
            if body is None:
                raise RequestRejected("The request body is not valid JSON.")
            if not isinstance(body, dict):
                raise RequestRejected("The JSON body must be an object of named fields.")
            fields.update(body)
        return fields
    try:
        form = request.form
        files = request.files if uploads else None
    except RequestEntityTooLarge:
        # The body's size was checked already (the pipeline): what is too large is the number of parts.
        limit = request.max_form_parts
        raise RequestRejected(
            f"The form has more than {limit:,} fields or files; send at most {limit:,}."
        ) from None
    for name, value in form.items():
        fields[name] = _form_text(name, value)
    for name, upload in (files or {}).items():
        fields[name] = _form_text(name, upload.read(), upload=True)
    return fields


def _form_text(name: str, value: str | bytes, *, upload: bool = False) -> str:
    """A form value as text; form-encoded and multipart bodies must be UTF-8, as JSON ones are."""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            what = "uploaded" if upload else "form field"
            raise RequestRejected(f"The {what} '{name}' is not UTF-8 text.", param=name) from None
    if "\ufffd" in value and _was_invalid_utf8(name):
        raise RequestRejected(f"The form field '{name}' is not UTF-8 text.", param=name)
    return value


def _was_invalid_utf8(name: str) -> bool:
    """Whether a form-encoded body held percent-escapes of bytes that are not UTF-8 (Werkzeug
    decodes them as U+FFFD, where a JSON or multipart body is refused)."""
    raw = request.environ.get(RAW_BODY, b"")
    try:
        parse_qsl(raw.decode("latin-1"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return True
    return False
