"""Per-client limits: requests per minute and requests in flight at once.

Counted in each server process (not shared between processes or tasks): with 2 workers a
client can get up to twice its limits. The minute is a sliding window over the times of the
requests admitted in the last 60 seconds, so no burst at a minute boundary doubles the rate.

A request that is admitted holds one in-flight slot until its response is closed, which for a
streamed answer is when the last chunk has been sent (or the client went away), not when the
view function returned: the request pipeline (`service.pipeline`) frees it when it closes the answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from service.errors import ApiError

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Limits:
    rpm: int
    max_concurrent: int


class LimitExceeded(ApiError):
    """429 with `Retry-After` (whole seconds, at least 1)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(
            429,
            message,
            code="rate_limit_exceeded",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


@dataclass
class _Usage:
    admitted: deque[float] = field(default_factory=deque)  # times of requests in the window
    in_flight: int = 0


class ClientLimiter:
    """Admits or refuses requests per client. Safe to share between threads and greenlets."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._usage: dict[str, _Usage] = {}
        self._lock = threading.Lock()

    def acquire(self, client: str, limits: Limits) -> Callable[[], None]:
        """Admit one request of `client` or raise `LimitExceeded`; return its release function.

        A refused request counts against neither limit. The release function may be called more
        than once; only the first call frees the slot.
        """
        with self._lock:
            usage = self._usage.setdefault(client, _Usage())
            now = self.clock()
            while usage.admitted and usage.admitted[0] <= now - WINDOW_SECONDS:
                usage.admitted.popleft()
            if len(usage.admitted) >= limits.rpm:
                # The oldest admitted request leaves the window first; room opens then.
                wait = usage.admitted[-limits.rpm] + WINDOW_SECONDS - now
                raise LimitExceeded(
                    f"Client {client!r} is over its limit of {limits.rpm} requests a minute.",
                    retry_after=max(1, math.ceil(wait)),
                )
            if usage.in_flight >= limits.max_concurrent:
                raise LimitExceeded(
                    f"Client {client!r} already has {limits.max_concurrent} requests in flight, "
                    "its limit; retry when one has finished.",
                    retry_after=1,
                )
            usage.admitted.append(now)
            usage.in_flight += 1

        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    usage.in_flight -= 1

        return release

    def in_flight(self, client: str) -> int:
        with self._lock:
            usage = self._usage.get(client)
            return usage.in_flight if usage else 0
