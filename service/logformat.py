"""Log line formats: text for people, JSON (one object a line) for CloudWatch.

Every line written while a request is handled carries its request id and client name, taken from
the request's state (`service.request_state`) by `RequestContextFilter`. JSON lines put extra
fields (`extra={...}`) at the top level, which CloudWatch Logs Insights filters on directly. The
gunicorn master formats its own lines with these classes too, so nothing here imports Flask.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from service import request_state

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
        state = request_state.current()
        if state is not None:
            record.request_id, record.client = state.id, state.client
        else:
            record.request_id = getattr(record, "request_id", "-")
            record.client = getattr(record, "client", "-")
        return True


# `_aws` is the one private-looking extra kept: the metadata that makes the access line an EMF
# document (service.metrics).
_KEPT_PRIVATE = {"_aws"}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in vars(record).items()
        if k not in _STANDARD_ATTRS and (not k.startswith("_") or k in _KEPT_PRIVATE)
    }


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
