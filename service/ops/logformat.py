"""Log line formats: text for people, JSON (one object a line) for CloudWatch.

Every line written while a request is handled carries its request id and client name, taken from
the request's state (`service.core.request_state`) by `RequestContextFilter`. JSON lines put extra
fields (`extra={...}`) at the top level, which CloudWatch Logs Insights filters on directly. The
gunicorn master formats its own lines with these classes too, so nothing here imports Flask.

Whatever a record holds, it is one line (a traceback aside, on marked lines of its own): a path,
model name or message with a line break cannot forge a record (`TextFormatter`).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

import orjson

from service.core import request_state
from service.core.escaping import log_text

# Gunicorn logs its own start-up and shutdown lines under `gunicorn.error`, which reads like an
# error; they are shown under plain `gunicorn`.
_RENAMED_LOGGERS = {"gunicorn.error": "gunicorn"}


# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "request_id",
    "client",
}


class RequestContextFilter(logging.Filter):
    """Adds `request_id` and `client` to every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.name = _RENAMED_LOGGERS.get(record.name, record.name)
        record.request_id, record.client = line_ids(
            getattr(record, "request_id", "-"), getattr(record, "client", "-")
        )
        return True


def line_ids(request_id: str, client: str) -> tuple[str, str]:
    """The request id and client a line names: the current request's, else the ones it was given."""
    state = request_state.current()
    return (state.id, state.client) if state is not None else (request_id, client)


# `_aws` is the one private-looking extra kept: the metadata that makes the access line an EMF
# document (service.ops.metrics).
_KEPT_PRIVATE = {"_aws"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return extras_of(vars(record))


def extras_of(fields: dict[str, Any]) -> dict[str, Any]:
    """The members of `fields` (a record's attributes, or an `extra=` dict) that a line shows."""
    return {
        k: v for k, v in fields.items() if k not in _STANDARD_ATTRS and (k[:1] != "_" or k in _KEPT_PRIVATE)
    }


def _stdlib_encode(value: Any) -> str:
    # What orjson refuses (integers beyond 64 bits, non-string keys, lone surrogates: a line must
    # never fail to be written), in the same compact form; non-ASCII is escaped here.
    return json.dumps(value, default=str, separators=(",", ":"))


def encode(value: Any) -> str:
    """`value` in compact JSON, as a line writes it: orjson (in C, a quarter of the standard
    library's time for a line), with anything it cannot encode written by `str()`."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        return _stdlib_encode(value)


class Encoded(dict[str, Any]):
    """A dict that carries its own JSON text (as `encode` writes it), for a member of every line
    whose larger part repeats (the access line's EMF metadata, service.ops.metrics): JsonFormatter
    writes `json` as it is rather than encoding the same lists again. Elsewhere it is a plain dict."""

    __slots__ = ("json",)

    def __init__(self, value: dict[str, Any], json_text: str) -> None:
        super().__init__(value)
        self.json = json_text


# Characters a JSON string may hold as they are but that str.splitlines() and some log viewers take
# for line breaks: escaped, so that one record stays one line whatever a client sent.
_LINE_BREAKS = {ord("\x85"): "\\u0085", ord("\u2028"): "\\u2028", ord("\u2029"): "\\u2029"}


def encode_line(line: dict[str, Any]) -> str:
    """A JSON line's text (without its line break)."""
    aws = line.get("_aws")
    if isinstance(aws, Encoded):
        line["_aws"] = orjson.Fragment(aws.json)  # written as it is, in its place
    try:
        text = orjson.dumps(line, default=str).decode()
    except orjson.JSONEncodeError:
        if isinstance(aws, Encoded):
            line["_aws"] = aws
        return _stdlib_encode(line)
    return text if text.isascii() else text.translate(_LINE_BREAKS)


_second: tuple[int, str] = (-1, "")  # the last second written, and its text


def time_text(created: float) -> str:
    """`created` (seconds since the epoch) as ISO 8601 in UTC to the millisecond, as
    `datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")` writes it; the
    second's text is made once a second, not for every line."""
    global _second
    fraction, whole = math.modf(created)
    second, micro = int(whole), round(fraction * 1e6)  # as datetime rounds to the microsecond
    if micro >= 1_000_000:
        second, micro = second + 1, micro - 1_000_000
    if second != _second[0]:
        _second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{micro // 1000:03d}+00:00"


def json_line(
    created: float,
    level: str,
    logger: str,
    message: str,
    request_id: str,
    client: str,
    extras: dict[str, Any],
) -> dict[str, Any]:
    """The members of a JSON line, in their order (JsonFormatter's, and service.ops.lines')."""
    line = {
        "time": time_text(created),
        "level": level,
        "logger": logger,
        "message": message,
        "request_id": request_id,
        "client": client,
    }
    line.update(extras)
    return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = json_line(
            record.created,
            record.levelname,
            record.name,
            record.getMessage(),
            getattr(record, "request_id", "-"),
            getattr(record, "client", "-"),
            _extras(record),
        )
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return encode_line(line)


# Starts each line of a traceback in the text format: a line that does not start with it is the
# first line of a record, whatever a client or an exception message held.
CONTINUATION = "  | "


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> [<request id> <client>] <logger>: <message> <extra>=<JSON>...`, one line per
    record: the fields and the message (with its %s arguments: paths, model names, error messages)
    go through `service.core.escaping.log_text`, so a client's line break or control character shows as
    `\\n`, never as a new line; extras are JSON, escaped by nature. A traceback follows on lines of
    their own, each escaped too and starting with CONTINUATION."""

    def format(self, record: logging.LogRecord) -> str:
        ids = f"{getattr(record, 'request_id', '-')} {getattr(record, 'client', '-')}"
        text = (
            f"{self.formatTime(record)} {record.levelname} [{log_text(ids)}] "
            f"{log_text(record.name)}: {log_text(record.getMessage())}"
        )
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in extras.items())
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        for more in (record.exc_text, record.stack_info and self.formatStack(record.stack_info)):
            if more:
                text += "".join(f"\n{CONTINUATION}{log_text(line)}" for line in more.splitlines())
        return text


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()
