"""The lines every request writes (its access line, the usage record of each provider call),
written straight to the service's JSON log stream when nothing else listens to them.

Through `logging`, each line costs a LogRecord, a caller lookup, filters and a handler's locks on
top of its JSON: about 15 microseconds of CPU a line in a serving worker, a tenth of a plain
request's CPU (docs/benchmarks.md). When the only handler an INFO record of the logger would reach
is the service's own JSON handler (`observability.configure_logging`), `write` builds the line as
JsonFormatter does (same members, same order, same request id and client) and writes it under that
handler's lock. Otherwise (the text format, a test's log capture, any other handler or filter) the
record goes through `logging` as any other. Either way the line is written before `write` returns:
nothing waits in memory, so a worker killed afterwards loses none (usage records are the accounting).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from service.ops.logformat import JsonFormatter, encode_line, extras_of, json_line, line_ids

_json_handler: logging.StreamHandler[Any] | None = None  # the service's JSON stdout handler


def use(handler: logging.StreamHandler[Any] | None) -> None:
    """The handler `write` may write to directly (None: always through `logging`)."""
    global _json_handler
    _json_handler = handler


def write(logger: logging.Logger, message: str, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
    """`logger.info(message, *args, extra=fields)`, with the same line as its outcome."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _sole_handler(logger)
    if handler is None:
        logger.info(message, *args, extra=fields)
        return
    request_id, client = line_ids(fields.get("request_id", "-"), fields.get("client", "-"))
    line = json_line(
        time.time(),
        "INFO",
        logger.name,
        message % args if args else message,
        request_id,
        client,
        extras_of(fields),
    )
    text = encode_line(line) + handler.terminator
    handler.acquire()
    try:
        handler.stream.write(text)
        handler.stream.flush()
    except Exception:
        # As logging does with a line it cannot write: say so on stderr, never fail the request.
        handler.handleError(logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None))
    finally:
        handler.release()


def _sole_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The service's JSON handler, if an INFO record of `logger` reaches it and no other handler,
    and no filter of the logger could drop or change the record."""
    handler = _json_handler
    if handler is None or logger.filters or handler.level > logging.INFO:
        return None
    if not isinstance(handler.formatter, JsonFormatter):
        return None
    reached = False
    current: logging.Logger | None = logger
    while current is not None:
        for each in current.handlers:
            if each is handler:
                reached = True
            elif each.level <= logging.INFO:
                return None
        current = current.parent if current.propagate else None
    return handler if reached else None
