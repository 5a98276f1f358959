"""Gunicorn configuration: `gunicorn -c python:service.server 'service:create_app()'`.

Gevent workers: LLM calls hold a request for seconds to minutes while doing nothing but wait, so
each worker process serves up to AIPROXY_WORKER_CONNECTIONS requests at once as greenlets, and a
fast request never queues behind slow ones. On SIGTERM gunicorn stops accepting connections and
gives in-flight requests AIPROXY_GRACEFUL_TIMEOUT seconds to finish.
"""

import sys

from gunicorn import glogging

from service import response_write
from service.logformat import RequestContextFilter, make_formatter
from service.settings import SettingsError, load_settings

try:
    _settings = load_settings()
except SettingsError as error:
    # One clear line, no traceback: the operator sees what to fix.
    print(f"aiproxy: configuration error: {error}", file=sys.stderr)
    sys.exit(2)

# Gunicorn's code for "the app failed to load": the master stops instead of forking new workers.
_APP_LOAD_ERROR = 4


def post_fork(server, worker):  # gunicorn hook, in each new worker before it builds the app
    if not response_write.install():
        worker.log.warning("Answers go out in two sends: service.response_write does not know this gunicorn")
    load_wsgi = worker.load_wsgi

    def load_wsgi_or_stop():
        # create_app refuses some configurations only the worker can check (a missing client key
        # store in production): one clear line and a stopped server, not a traceback per worker.
        try:
            load_wsgi()
        except SettingsError as error:
            print(f"aiproxy: configuration error: {error}", file=sys.stderr, flush=True)
            sys.exit(_APP_LOAD_ERROR)

    worker.load_wsgi = load_wsgi_or_stop


_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host  # IPv6 literal
bind = [f"{_host}:{_settings.port}"]
worker_class = "gevent"
workers = _settings.workers
worker_connections = _settings.worker_connections
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Gevent workers heartbeat from their own greenlet, so a long request does not trip this.
timeout = 60
loglevel = _settings.log_level.lower()
# Gunicorn's own lines (start-up, worker exits) in the service's format, on stdout.
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"aiproxy": {"()": make_formatter, "log_format": _settings.log_format}},
    "filters": {"context": {"()": RequestContextFilter}},
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "aiproxy",
            "filters": ["context"],
        }
    },
    # The root logger is set up by the app in each worker (service.observability).
    "root": {"handlers": [], "level": _settings.log_level},
    "loggers": {
        "gunicorn.error": {"handlers": ["stdout"], "level": _settings.log_level, "propagate": False},
        # Off: the app writes its own request line, with request id and client.
        "gunicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
    },
}
# No runtime control socket: nothing uses it, and the image's user has no home to put it in.
control_socket_disable = True
proc_name = "aiproxy"


class _Logger(glogging.Logger):
    """Gunicorn's logger with its access log off for good.

    With a logconfig_dict, gunicorn builds every access line (a dozen atoms per request) even
    though the handler above drops it; that alone cost about a tenth of a request's CPU.
    """

    def _compute_access_log_enabled(self) -> bool:
        return False


logger_class = _Logger
# Behind the ALB: trust X-Forwarded-* from it (the task accepts traffic only from the ALB).
forwarded_allow_ips = "*"
