"""Logging set-up, the request id, and Honeybadger error reporting.

The line formats themselves are in `service.ops.logformat` (the gunicorn master uses them too).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from service.core import request_state
from service.ops import lines
from service.ops.logformat import RequestContextFilter, make_formatter

REQUEST_ID_HEADER = "X-Request-Id"
# A client's request id is echoed only when it is short and plain, so it cannot forge log lines.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")

# Request ids are logged everywhere: one that looks like a key (a client's or a provider's, sent by
# mistake) is replaced rather than written to the logs.
_KEY_LIKE_PREFIXES = ("aip_", "sk-", "bearer")


def request_id_from(sent: str) -> str:
    """The id of a request whose `X-Request-Id` header was `sent`: that, if usable, else a new one."""
    usable = _VALID_REQUEST_ID.match(sent) and not sent.lower().startswith(_KEY_LIKE_PREFIXES)
    return sent if usable else request_state.new_id()


def configure_logging(level: str, log_format: str, stream: Any = None) -> logging.Handler:
    """Send every log record to one stdout handler with the chosen level and format.

    Each line is written when it is logged, so nothing is lost when a process is stopped or killed
    (usage records are the accounting of record); only a gevent worker's JSON access lines may wait
    for its next idle moment (service.ops.lines.write_soon).
    """
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(RequestContextFilter())
    handler.set_name("aiproxy")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "aiproxy"]:
        old.flush()
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    lines.use(handler if log_format == "json" else None)
    # No line shows a thread or process name; looking them up costs about a third of each
    # record (os.getpid is a system call, and every greenlet is a "thread" to logging).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return handler


# --- Honeybadger -------------------------------------------------------------------------------

# Keys whose values never leave the process, matched case-insensitively as substrings.
SENSITIVE_KEY_PARTS = ("authorization", "api-key", "api_key", "apikey", "password", "secret", "cookie")
FILTERED = "[FILTERED]"
_REPORTED_MARK = "_aiproxy_reported_to_honeybadger"


def _is_sensitive(key: Any) -> bool:
    lowered = str(key).lower()
    return any(part in lowered for part in SENSITIVE_KEY_PARTS)


def scrub(value: Any, secrets: Iterable[str] = ()) -> Any:
    """Copy `value` with sensitive keys filtered and known secret values blanked out of strings."""
    secrets = [s for s in secrets if s and len(s) >= 8]
    if isinstance(value, dict):
        return {k: FILTERED if _is_sensitive(k) else scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, FILTERED)
        return value
    return value


class HoneybadgerLogHandler(logging.Handler):
    """Reports ERROR and CRITICAL records; an exception is reported once however often it is logged.

    Unhandled exceptions in requests reach Honeybadger through here too: Flask logs each one at
    ERROR with its traceback, so there is one reporting path and nothing to de-duplicate across.
    """

    def __init__(self, notify: Callable[..., Any]) -> None:
        super().__init__(level=logging.ERROR)
        self._notify = notify

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("honeybadger"):
            return  # the client's own complaints would loop back here
        try:
            context = {
                "request_id": getattr(record, "request_id", request_state.current_id()),
                "client": getattr(record, "client", "-"),
                "logger": record.name,
                "level": record.levelname,
            }
            state = request_state.current()
            if state is not None:
                context["route"] = state.route_name
                context["method"] = state.method
            exception = record.exc_info[1] if record.exc_info else None
            if exception is not None:
                if getattr(exception, _REPORTED_MARK, False):
                    return
                setattr(exception, _REPORTED_MARK, True)  # travels with the exception object
                context["log_message"] = record.getMessage()
                self._notify(exception=exception, context=context)
            else:
                self._notify(
                    error_class=f"{record.levelname} log",
                    error_message=record.getMessage(),
                    context=context,
                )
        except Exception:
            self.handleError(record)


def install_honeybadger(
    app: Flask,
    api_key: Callable[[], str | None],
    *,
    rotates: bool,
    endpoint: str,
    environment: str,
    known_secrets: Callable[[], Iterable[str]],
    force_sync: bool = False,
) -> HoneybadgerLogHandler | None:
    """Report to Honeybadger whenever `api_key()` gives a key; return the log handler.

    The key is looked up at each report, so a key set or rotated in Secrets Manager takes effect
    without a restart (`rotates`: the key comes from there). Returns None, and installs nothing,
    when there is no key and none can appear.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "aiproxy-honeybadger"]:
        root.removeHandler(old)  # an app built earlier in this process (tests) must not report
    first_key = api_key()
    if not first_key and not rotates:
        return None
    from honeybadger import honeybadger
    from honeybadger.contrib.flask import FlaskHoneybadger

    def before_notify(notice: Any) -> Any:
        # Filter by key anywhere in the payload and blank any secret value that leaked into a
        # message or a header, whatever its key.
        cleaned = scrub(notice.payload, known_secrets())
        notice.payload.clear()
        notice.payload.update(cleaned)
        return notice

    app.config.update(
        HONEYBADGER_API_KEY=first_key or "",
        HONEYBADGER_ENDPOINT=endpoint,
        # Honeybadger drops reports from "development"/"test" unless told otherwise; this service
        # reports wherever a key was given.
        HONEYBADGER_ENVIRONMENT=environment,
        HONEYBADGER_FORCE_REPORT_DATA=True,
        HONEYBADGER_FORCE_SYNC=force_sync,
        HONEYBADGER_PARAMS_FILTERS=["Authorization", "api-key", "api_key", "password", "secret"],
    )
    # report_exceptions=False: exceptions arrive through the log handler below (see its docstring).
    FlaskHoneybadger(app, report_exceptions=False, reset_context_after_request=True)
    honeybadger.configure(before_notify=before_notify)

    def notify(**report: Any) -> None:
        key = api_key()
        if not key:
            return  # no key (yet): nothing is sent
        if key != honeybadger.config.api_key:
            honeybadger.configure(api_key=key)  # set or rotated since the last report
        honeybadger.notify(**report)

    handler = HoneybadgerLogHandler(notify)
    handler.addFilter(RequestContextFilter())
    handler.set_name("aiproxy-honeybadger")
    root.addHandler(handler)
    return handler
