"""Gunicorn configuration: `gunicorn -c python:service.server.config 'service:create_app()'`.

Gevent workers (`service.server.worker`: gunicorn's, hardened against hostile connections): LLM calls
hold a request for seconds to minutes while doing nothing but wait, so each worker process serves
up to AIPROXY_WORKER_CONNECTIONS requests at once as greenlets, and a fast request never queues
behind slow ones. Every worker listens on a socket of its own on the same port (`reuse_port`), so
the kernel spreads connections over the workers evenly, instead of the first worker to wake taking
most of them; a second server started on a port one already serves, which reuse_port would let in
to split the traffic, stops with one line (`startup.check_port_free`). On SIGTERM gunicorn stops
accepting connections and gives in-flight requests AIPROXY_GRACEFUL_TIMEOUT seconds to finish. The
master gives the workers a fresh directory for their Prometheus metrics (PROMETHEUS_MULTIPROC_DIR),
so `GET /metrics` counts the requests of every worker, whichever worker answers it.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING

from gunicorn import glogging

from service.config.setting import SettingsError
from service.config.settings import load_settings
from service.ops.logformat import RequestContextFilter, make_formatter

if TYPE_CHECKING:
    from gunicorn.arbiter import Arbiter
    from gunicorn.config import Config
    from gunicorn.workers.base import Worker

try:
    _settings = load_settings()
except SettingsError as error:
    # One clear line, no traceback: the operator sees what to fix.
    print(f"aiproxy: configuration error: {error}", file=sys.stderr)
    sys.exit(2)

_host = f"[{_settings.host}]" if ":" in _settings.host else _settings.host  # IPv6 literal
bind = [f"{_host}:{_settings.port}"]
reuse_port = True
worker_class = "service.server.worker.ProxyWorker"
workers = _settings.workers
worker_connections = _settings.worker_connections
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
# Gevent workers heartbeat from their own greenlet, so a long request does not trip this.
timeout = 60
loglevel = _settings.log_level.lower()
# No runtime control socket: nothing uses it, and the image's user has no home to put it in.
control_socket_disable = True
proc_name = "aiproxy"
# Behind the ALB: trust X-Forwarded-* from it (the task accepts traffic only from the ALB).
forwarded_allow_ips = "*"


class Logger(glogging.Logger):
    """Gunicorn's own lines (start-up, worker exits) in the service's format, on stdout; no access
    log (the app writes its own request line, with request id and client)."""

    def setup(self, cfg: Config) -> None:
        super().setup(cfg)
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(make_formatter(_settings.log_format))
        handler.addFilter(RequestContextFilter())
        for old in list(self.error_log.handlers):
            self.error_log.removeHandler(old)
        self.error_log.addHandler(handler)
        self.error_log.propagate = False


logger_class = Logger
_metrics_dir: str | None = None  # the directory on_starting made for the workers' metrics


def on_starting(server: Arbiter) -> None:
    """gunicorn hook: in the master, before it listens or starts a worker."""
    from service.server.startup import check_before_listening, check_port_free

    if not server.master_pid:  # not a master re-executed by SIGUSR2, whose parent serves the port
        check_port_free(_settings.host, _settings.port)
    check_before_listening(_settings)
    if _settings.workers > 1 and not _settings.redis_url:
        server.log.warning(
            "No AIPROXY_REDIS_URL: each of the %d server processes counts client limits and budgets on its "
            "own, so a client may get up to %d times its limits here (and that again for every task)",
            _settings.workers,
            _settings.workers,
        )
    # Prometheus' multiprocess mode (service.ops.prometheus), when `/metrics` is on: every worker,
    # forked from here, writes its figures to files in this directory and `/metrics` adds up all
    # of them. A fresh directory each start: files left by an earlier server would be counted again.
    global _metrics_dir
    if _settings.metrics_key:
        _metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="aiproxy-metrics-")


def child_exit(server: Arbiter, worker: Worker) -> None:
    """gunicorn hook: in the master, once a worker has exited."""
    if _metrics_dir:
        # A dead worker's counts stay in the sums; only its "live" gauges are dropped.
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]  # unannotated


def on_exit(server: Arbiter) -> None:
    """gunicorn hook: in the master, as it stops."""
    if _metrics_dir:
        shutil.rmtree(_metrics_dir, ignore_errors=True)


def when_ready(server: Arbiter) -> None:
    """gunicorn hook: in the master, once the workers are being started."""
    # With reuse_port the workers own the sockets, so gunicorn's own line names no address.
    server.log.info(
        "Listening at: http://%s:%s (%d gevent workers)", _host, _settings.port, _settings.workers
    )
