"""Log line formats: text for people, JSON (one object a line) for CloudWatch.

Every line written while a request is handled carries its request id and client name, taken from
`flask.g` (where the request pipeline puts them) by `RequestContextFilter`. JSON lines put extra
fields (`extra={...}`) at the top level, which CloudWatch Logs Insights filters on directly. No
Flask import at module level: the gunicorn master formats its own lines with these classes and
never loads Flask.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


def _request_context() -> tuple[str, str] | None:
    """(request_id, client) of the request being handled, or None outside one."""
    flask = sys.modules.get("flask")  # not loaded: there cannot be a request
    if flask is None or not flask.has_app_context() or "request_id" not in flask.g:
        return None  # the request pipeline (service.pipeline) sets the id on `g` first
    return flask.g.request_id, flask.g.get("client", "anonymous")


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
        context = _request_context()
        if context:
            record.request_id, record.client = context
        else:
            record.request_id = getattr(record, "request_id", "-")
            record.client = getattr(record, "client", "-")
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "client": getattr(record, "client", "-"),
        }
        line.update(_extras(record))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(request_id)s %(client)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = _extras(record)
        if extras:
            text += " " + " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in extras.items())
        return text


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()
