"""The windows limits are counted in, and what one caller (a client or one of its end users) has
used of them in this process.

A minute of requests and tokens slides (`WINDOW_SECONDS`); budgets and daily token allowances
count in UTC calendar days and months (`windows`, `window_resets`). `Counts` is one caller's
figures in this process (`service.governance.limits.LocalLimiter` keeps one per client and one
per end user); the shared store keeps the same figures under the caller's keys
(`service.governance.shared_limits`).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

WINDOW_SECONDS = 60.0


def duration_text(seconds: float) -> str:
    """A duration as OpenAI writes it in x-ratelimit-reset-*: `1s`, `6m0s`, `250ms`."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def dollars(amount: float) -> str:
    """`$12.50`, and small amounts to the tenth of a cent or finer: `$0.0012`."""
    return f"${amount:,.2f}" if amount >= 1 or amount == 0 else f"${amount:.4f}"


@functools.lru_cache(maxsize=4)
def _day_windows(day: int) -> tuple[str, str]:
    moment = datetime.fromtimestamp(day * 86400, UTC)
    return moment.strftime("%Y-%m-%d"), moment.strftime("%Y-%m")


def windows(now: float) -> tuple[str, str]:
    """The UTC day and month `now` falls in, as budget window names (`2026-11-30`, `2026-11`)."""
    return _day_windows(int(now // 86400))  # worked out once a day, not once a request


def window_resets(now: float) -> tuple[datetime, datetime]:
    """When the current UTC day and month end."""
    moment = datetime.fromtimestamp(now, UTC)
    day_end = (moment + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    month_end = (moment.replace(day=28) + timedelta(days=4)).replace(
        day=1, hour=0, minute=0, second=0, microsecond=0
    )
    return day_end, month_end


def seconds_to_midnight(now: float) -> float:
    """Seconds until the current UTC day ends (a daily allowance resets then)."""
    return (window_resets(now)[0] - datetime.fromtimestamp(now, UTC)).total_seconds()


@dataclass
class Counts:
    """One caller's figures in this process."""

    admitted: deque[float] = field(default_factory=deque)  # times of requests in the window
    # Tokens reserved or used, by the second they were reserved in (as the shared store counts
    # them): a limit check adds up at most 61 numbers, however many requests the minute held.
    tokens: dict[int, float] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    spent: dict[str, float] = field(default_factory=dict)  # budget window -> USD
    tokens_today: dict[str, int] = field(default_factory=dict)  # UTC day -> tokens used

    @property
    def empty(self) -> bool:
        return not (self.admitted or self.tokens or self.in_flight or self.spent or self.tokens_today)

    def expire(self, now: float) -> None:
        while self.admitted and self.admitted[0] <= now - WINDOW_SECONDS:
            self.admitted.popleft()
        if self.tokens:
            horizon = math.floor(now - WINDOW_SECONDS)
            for second in [second for second in self.tokens if second <= horizon]:
                del self.tokens[second]
        if self.spent or self.tokens_today:
            day, month = windows(now)
            for window in [w for w in self.spent if w not in (day, month)]:
                del self.spent[window]
            for window in [w for w in self.tokens_today if w != day]:
                del self.tokens_today[window]

    def tokens_free_in(self, tpm: int, estimate: int, now: float) -> float:
        """Seconds until enough reserved tokens leave the window for `estimate` to fit."""
        needed = sum(self.tokens.values()) + estimate - tpm
        for second, tokens in sorted(self.tokens.items()):
            needed -= tokens
            if needed <= 0:
                return second + WINDOW_SECONDS - now
        return WINDOW_SECONDS
