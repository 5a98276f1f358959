"""The fields of a request that may arrive as a query string, a form, or a JSON object body.

Used by the routes that accept parameters in any of those shapes (`/assessment*`, `/test/openai`),
so they read and refuse them the same way. Text must be UTF-8 in every shape: Werkzeug keeps a
percent-escape of bytes that are not UTF-8 as the literal `%FF` (query strings and form-encoded
bodies), decodes a multipart text part with U+FFFD in their place, and drops a whole form-encoded
body that is not UTF-8, where a JSON body is refused; here each is a 400 naming the field.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, MultipartDecoder, NeedData

from service.core.errors import RequestRejected, quoted
from service.edge.bodies import RAW_BODY, json_object

_FORM = "application/x-www-form-urlencoded"


def request_fields(*, uploads: bool = False) -> dict[str, Any]:
    """Query string, then a form (with `uploads`, multipart files as UTF-8 text) or a JSON object."""
    raw: bytes = request.environ.get(RAW_BODY, b"")
    fields: dict[str, Any] = urlencoded(request.environ.get("QUERY_STRING", "").encode("latin-1"))
    if request.is_json:
        if raw:
            fields.update(json_object(raw))  # the OpenAI routes' parser: the same messages
        return fields
    if request.mimetype == _FORM:
        fields.update(urlencoded(raw, most=request.max_form_parts))
        return fields
    # The pipeline has bounded the whole body; Werkzeug's own 500 KB bound on one text part is
    # not the proxy's (each field's limit is checked where it is read).
    request.max_form_memory_size = max(len(raw), 1)
    try:
        form = request.form
        files = request.files if uploads else None
    except RequestEntityTooLarge:
        # The body's size was checked already: what is too large is the number of parts.
        most = request.max_form_parts
        assert most is not None, "Werkzeug counts the parts only against a bound"
        raise _too_many_fields(most) from None
    if request.mimetype == "multipart/form-data" and raw:
        # Werkzeug reads a body it cannot parse as an empty form, and text parts with U+FFFD.
        name = _multipart_field_not_utf8(raw, request.mimetype_params.get("boundary", ""))
        if name is not None:
            raise RequestRejected(
                f"The form field {quoted(name, 100)} is not UTF-8 text.", param=_param(name)
            )
    fields.update(form.items())
    for name, upload in (files or {}).items():
        try:
            fields[name] = upload.read().decode("utf-8")
        except UnicodeDecodeError:
            raise RequestRejected(
                f"The uploaded {quoted(name, 100)} is not UTF-8 text.", param=_param(name)
            ) from None
    return fields


def urlencoded(raw: bytes, *, most: int | None = None) -> dict[str, str]:
    """The fields of a query string or form-encoded body (the first of a repeated name), decoded
    as UTF-8 strictly; RequestRejected names a field whose bytes are not UTF-8, or says there are
    more than `most` fields (as a multipart form of as many parts is refused)."""
    fields: dict[str, str] = {}
    count = 0
    for pair in raw.split(b"&"):
        if not pair:
            continue
        count += 1
        if most is not None and count > most:
            raise _too_many_fields(most)
        name, _, value = (unquote_to_bytes(part.replace(b"+", b" ")) for part in pair.partition(b"="))
        try:
            text = name.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError:
            shown = name.decode("utf-8", "replace")
            raise RequestRejected(
                f"The form field {quoted(shown, 100)} is not UTF-8 text.", param=_param(shown)
            ) from None
        fields.setdefault(*text)
    return fields


def _too_many_fields(limit: int) -> RequestRejected:
    return RequestRejected(f"The form has more than {limit:,} fields or files; send at most {limit:,}.")


def _multipart_field_not_utf8(raw: bytes, boundary: str) -> str | None:
    """The first text part of a multipart body whose bytes are not text in its charset;
    RequestRejected when the body is not multipart/form-data at all."""
    if not boundary:
        raise RequestRejected("The multipart/form-data body has no boundary in its Content-Type.")
    decoder = MultipartDecoder(boundary.encode("latin-1", "replace"))
    decoder.receive_data(raw)
    decoder.receive_data(None)
    try:
        return _first_not_utf8(decoder)
    except ValueError:
        raise RequestRejected(
            "The multipart/form-data body is not readable: its parts are malformed."
        ) from None


def _first_not_utf8(decoder: MultipartDecoder) -> str | None:
    part: Field | None = None
    data: list[bytes] = []
    event = decoder.next_event()
    while not isinstance(event, Epilogue | NeedData):
        if isinstance(event, Field):
            part, data = event, []
        elif not isinstance(event, Data):
            part = None  # a file: read as text where it is used
        elif part is not None:
            data.append(event.data)
            if not event.more_data:
                try:
                    b"".join(data).decode(_charset(part.headers.get("content-type", "")))
                except UnicodeDecodeError:
                    return part.name
        event = decoder.next_event()
    return None


def _param(name: str) -> str | None:
    """A field's name as an error's `param`: not a copy of whatever a client sent as a name."""
    return name if len(name) <= 100 else None


def _charset(content_type: str) -> str:
    """The charset Werkzeug decodes a text part with: one of the few it trusts, else UTF-8."""
    charset = parse_options_header(content_type)[1].get("charset", "").lower()
    return charset if charset in ("ascii", "us-ascii", "utf-8", "iso-8859-1") else "utf-8"
