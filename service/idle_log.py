"""Log lines written while the worker waits, not while a client waits.

A relayed request writes two lines (access and usage), each a JSON encoding and a write system
call. In a gevent worker the request path only hands a record over; the hub formats and writes
everything handed over the next time it runs its callbacks, which is when every request in the
worker is waiting for I/O (for a relayed request: right after its upstream send). No request waits
behind another's lines, and under load the lines of many requests go out in one write: in the
benchmark's throughput scenario about 10 % more requests/s (README "Benchmarks").

WARNING and above are written at once, after anything still pending so the order holds: the lines
that explain a crash never wait in memory. A record from another OS thread is written at once too
(the hub's callback queue belongs to its own thread), and `flush()` (called by `logging.shutdown`
at exit) writes whatever is pending.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable
from typing import Any, TextIO

import gevent
import gevent.monkey

# The OS thread id, also under gevent's monkey-patching (where every greenlet is a "thread").
_thread_id = gevent.monkey.get_original("_thread", "get_ident")


def idle_scheduler() -> Callable[[Callable[[], None]], Any] | None:
    """The hub's "run this when you next get control" when gevent drives this process, else None.

    Gunicorn's gevent worker monkey-patches the socket module before it loads the app; tests and
    command-line tools do not, and keep writing each line at once.
    """
    if not gevent.monkey.is_module_patched("socket"):
        return None
    return gevent.get_hub().loop.run_callback


class IdleWriteHandler(logging.StreamHandler):
    """A StreamHandler that leaves lines below WARNING for the hub to write when it next runs."""

    def __init__(self, stream: TextIO, schedule: Callable[[Callable[[], None]], Any]) -> None:
        super().__init__(stream)
        self._schedule = schedule
        self._hub_thread = _thread_id()
        self._pending: collections.deque[logging.LogRecord] = collections.deque()
        self._scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        if _thread_id() != self._hub_thread:
            super().emit(record)  # lines already pending follow when the hub next runs
            return
        try:
            # The message is built now: its arguments could change before the line is written.
            record.msg, record.args = record.getMessage(), None
        except Exception:
            self.handleError(record)
            return
        self._pending.append(record)
        if record.levelno >= logging.WARNING:
            self.write_pending()
        elif not self._scheduled:
            self._scheduled = True
            self._schedule(self.write_pending)

    def write_pending(self) -> None:
        self._scheduled = False
        lines = []
        while self._pending:
            record = self._pending.popleft()
            try:
                lines.append(self.format(record) + self.terminator)
            except Exception:
                self.handleError(record)
        if lines:
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                self.handleError(record)

    def flush(self) -> None:
        if _thread_id() == self._hub_thread:
            self.write_pending()
        super().flush()
