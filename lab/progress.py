"""A one-line progress bar on stderr: done/total, failures, elapsed time and an estimate of the rest.

On a terminal the line redraws in place; elsewhere (CI logs, a pipe) a line is printed at every
tenth of the way, so logs stay short.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total: int, *, label: str = "students", stream: TextIO | None = None, enabled: bool = True
    ):
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled and total > 0
        self.done = 0
        self.failed = 0
        self._started = time.monotonic()
        self._interactive = self.stream.isatty()
        self._last_printed_tenth = -1
        self._lock = threading.Lock()

    def advance(self, *, failed: bool = False) -> None:
        with self._lock:
            self.done += 1
            self.failed += failed
            if self.enabled:
                self._draw()

    def update(self, done: int, *, failed: int = 0) -> None:
        """Counts reported by someone else (a batch's finished requests); drawn when they change."""
        with self._lock:
            if (done, failed) == (self.done, self.failed):
                return
            self.done, self.failed = min(done, self.total), failed
            if self.enabled:
                self._draw()

    def close(self) -> None:
        if self.enabled and self._interactive:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        width = 30
        filled = width * self.done // self.total
        elapsed = time.monotonic() - self._started
        remaining = elapsed / self.done * (self.total - self.done) if self.done else 0
        failures = f", {self.failed} failed" if self.failed else ""
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.label}{failures}"
            f"  {_clock(elapsed)} elapsed, ~{_clock(remaining)} left"
        )

    def _draw(self) -> None:
        if self._interactive:
            self.stream.write("\r" + self.line())
        else:
            tenth = 10 * self.done // self.total
            if tenth == self._last_printed_tenth:
                return
            self._last_printed_tenth = tenth
            self.stream.write(self.line() + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"
