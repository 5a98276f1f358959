"""The lines every request writes (its access line, the usage record of each provider call),
written straight to the service's JSON log stream when nothing else listens to them.

Through `logging`, each line costs a LogRecord, a caller lookup, filters and a handler's locks on
top of its JSON: about 15 microseconds of CPU a line in a serving worker, a tenth of a plain
request's CPU (docs/benchmarks.md). When the only handler an INFO record of the logger would reach
is the service's own JSON handler (`observability.configure_logging`), `write` builds the line as
JsonFormatter does (same members, same order, same request id and client) and writes it under that
handler's lock. Otherwise (the text format, a test's log capture, any other handler or filter) the
record goes through `logging` as any other.

A usage record is written before `write` returns: nothing waits in memory, so a worker killed
afterwards loses none (usage records are the accounting). The access line (`write_soon`) may wait
a moment in a gevent worker: it is written when the worker next has nothing to run (gevent's idle
watcher: while its requests wait for an upstream or a client), or together with the lines before
it once MAX_WAITING wait, and at the process's exit. Its JSON and its write then overlap a wait
instead of delaying the next request on the connection, and under load many lines go out in one
write. A worker killed outright (SIGKILL) loses at most MAX_WAITING access lines, never a usage
record; a line that waited keeps the time it was logged at, so lines of other loggers written
meanwhile may come before it in the stream.
"""

from __future__ import annotations

import atexit
import logging
import time
from typing import Any

import gevent
import gevent.monkey

from service.core.sockets import gevent_drives
from service.ops.logformat import JsonFormatter, encode_line, extras_of, json_line, line_ids

# Access lines that wait at most before they are written together, in one write.
MAX_WAITING = 32

_json_handler: logging.StreamHandler[Any] | None = None  # the service's JSON stdout handler
# The OS thread whose gevent hub may hold lines back (the one that set logging up: the worker's).
_os_thread = gevent.monkey.get_original("_thread", "get_ident")
_home_thread: int | None = None
# A line as logged: its logger, message, arguments, fields and time. Every line is for the
# handler `use` set (`_json_handler`), and `use` writes what waits before it changes it.
_Line = tuple[logging.Logger, str, tuple[Any, ...], dict[str, Any], float]
_waiting: list[_Line] = []
_idle: Any = None  # the hub's idle watcher, made when a line first waits


def use(handler: logging.StreamHandler[Any] | None) -> None:
    """The handler `write` may write to directly (None: always through `logging`)."""
    global _json_handler, _home_thread
    flush()  # what waits for the handler being replaced
    _json_handler = handler
    _home_thread = _os_thread()


def write(logger: logging.Logger, message: str, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
    """`logger.info(message, *args, extra=fields)`, with the same line as its outcome."""
    handler = _straight_to(logger, message, args, fields)
    if handler is not None:
        _emit(handler, [(logger, message, args, fields, time.time())])


def write_soon(logger: logging.Logger, message: str, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
    """`write`, but in a gevent worker the line may wait for the worker's next idle moment (see
    the module's docstring). For lines that are not the accounting: the access line."""
    handler = _straight_to(logger, message, args, fields)
    if handler is None:
        return
    line = (logger, message, args, fields, time.time())
    if not gevent_drives() or _os_thread() != _home_thread:
        _emit(handler, [line])  # no hub of ours to wait in (tests, tools, another thread)
        return
    _waiting.append(line)
    if len(_waiting) >= MAX_WAITING:
        flush()
    elif len(_waiting) == 1:
        _idle_watcher().start(flush)


def _straight_to(
    logger: logging.Logger, message: str, args: tuple[Any, ...], fields: dict[str, Any]
) -> logging.StreamHandler[Any] | None:
    """The handler whose stream the line goes straight to; None when there is none (the level is
    off, or the record went through `logging`, which is done here)."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    handler = _sole_handler(logger)
    if handler is None:
        logger.info(message, *args, extra=fields, stacklevel=2)  # named as written by write/write_soon
    return handler


def flush() -> None:
    """Write every line still waiting, in the order they were logged."""
    if _idle is not None:
        _idle.stop()
    if _waiting and _json_handler is not None:
        waited = _waiting[:]
        _waiting.clear()
        _emit(_json_handler, waited)


def _idle_watcher() -> Any:
    global _idle
    if _idle is None:
        _idle = gevent.get_hub().loop.idle()
        atexit.register(flush)  # a worker's exit writes what still waits
    return _idle


def _emit(handler: logging.StreamHandler[Any], batch: list[_Line]) -> None:
    """Write `batch`'s lines in one write under the handler's lock."""
    texts = []
    for logger, message, args, fields, logged_at in batch:
        try:
            texts.append(_text(handler, logger, message, args, fields, logged_at))
        except Exception:
            handler.handleError(_record(logger, message, args))
    if texts:
        _write(handler, "".join(texts), batch[0])


def _text(
    handler: logging.StreamHandler[Any],
    logger: logging.Logger,
    message: str,
    args: tuple[Any, ...],
    fields: dict[str, Any],
    logged_at: float,
) -> str:
    request_id, client = line_ids(fields.get("request_id", "-"), fields.get("client", "-"))
    line = json_line(
        logged_at,
        "INFO",
        logger.name,
        message % args if args else message,
        request_id,
        client,
        extras_of(fields),
    )
    return encode_line(line) + handler.terminator


def _write(handler: logging.StreamHandler[Any], text: str, first: _Line) -> None:
    handler.acquire()
    try:
        handler.stream.write(text)
        handler.stream.flush()
    except Exception:
        # As logging does with a line it cannot write: say so on stderr, never fail the request.
        handler.handleError(_record(first[0], first[1], first[2]))
    finally:
        handler.release()


def _record(logger: logging.Logger, message: str, args: tuple[Any, ...]) -> logging.LogRecord:
    return logger.makeRecord(logger.name, logging.INFO, "", 0, message, args, None)


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
