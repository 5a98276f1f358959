"""Per-client limits and budgets, checked once before the provider call and settled once after.

Every limit is an optional field of the client's key store entry (docs/client-keys.md):

- `rpm`: requests per minute, a sliding window over the times of the requests admitted in the
  last 60 seconds (no burst at a minute boundary doubles the rate);
- `tpm`: tokens per minute, the same window over tokens. Admission reserves an estimate (the
  body's size plus the output it asks for: `service.edge.bodies.estimate_tokens`); settling replaces
  the estimate with the tokens the providers reported;
- `max_concurrent`: requests in flight at once. A request holds its slot until its answer is
  closed, which for a stream is when the last event has been sent or the client went away;
- `budget_usd_per_day`, `budget_usd_per_month`: spending in UTC calendar windows. A client whose
  spending has reached a budget is refused (429 `budget_exceeded`) until the window resets; the
  request that crosses it is the last one admitted, so a budget is overshot by at most one
  request's cost.

`LocalLimiter` counts in this process (the embedded default for one process);
`service.governance.shared_limits.SharedLimiter` counts in Redis/Valkey for every process and task.
"""

from __future__ import annotations

import functools
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypedDict

from service.core.errors import LimitExceeded
from service.core.request_state import Usage

WINDOW_SECONDS = 60.0

__all__ = ["Admission", "LimitExceeded", "Limiter", "Limits", "LocalLimiter"]


@dataclass(frozen=True)
class Limits:
    rpm: int
    max_concurrent: int
    tpm: int | None = None
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None

    @property
    def has_budget(self) -> bool:
        return self.budget_usd_per_day is not None or self.budget_usd_per_month is not None


@dataclass
class Admission:
    """What admitting one request reserved, and what its client has left (for the answer's headers)."""

    client: str
    limits: Limits
    reserved_tokens: int
    admitted_at: float  # the limiter's clock (seconds since the epoch)
    lease: str = field(default_factory=lambda: uuid.uuid4().hex)
    remaining_requests: int = 0
    reset_requests: float = 0.0  # seconds until the window has room for one more request
    remaining_tokens: int | None = None
    reset_tokens: float = 0.0
    spent_day: float = 0.0
    spent_month: float = 0.0
    in_flight: int = 0  # the client's requests in flight, this one included
    local: bool = True  # counted in this process (no store, or the store failed)
    settled: bool = False

    @property
    def token_second(self) -> int:
        """The second of the token window the estimate was reserved in (for a client with a tpm)."""
        return math.floor(self.admitted_at)

    @property
    def settles_first(self) -> bool:
        """Whether settling this request can change its client's next admission, so it is done
        before the client has the answer (`service.edge.pipeline`): the client has a budget, this
        request holds its last slot, or fewer tokens are left of its tpm than this one reserved.
        Otherwise the answer goes out first and the client never waits for the settling."""
        return (
            self.limits.has_budget
            or self.in_flight >= self.limits.max_concurrent
            or (self.remaining_tokens is not None and self.remaining_tokens < self.reserved_tokens)
        )

    def headers(self) -> list[tuple[str, str]]:
        """OpenAI's rate-limit headers, for the client's own limits."""
        headers = [
            ("x-ratelimit-limit-requests", str(self.limits.rpm)),
            ("x-ratelimit-remaining-requests", str(max(0, self.remaining_requests))),
            ("x-ratelimit-reset-requests", duration_text(self.reset_requests)),
        ]
        if self.limits.tpm is not None and self.remaining_tokens is not None:
            headers += [
                ("x-ratelimit-limit-tokens", str(self.limits.tpm)),
                ("x-ratelimit-remaining-tokens", str(max(0, self.remaining_tokens))),
                ("x-ratelimit-reset-tokens", duration_text(self.reset_tokens)),
            ]
        return headers


class ClientUsage(TypedDict):
    """What a client has used of its limits (`Limiter.usage`, shown by GET /v1/limits)."""

    requests_last_minute: int
    tokens_last_minute: int
    in_flight: int
    spent_usd_today: float
    spent_usd_this_month: float


class Limiter(Protocol):
    def admit(self, client: str, limits: Limits, estimate: int) -> Admission:
        """Admit one request of `client` or raise LimitExceeded (a refused request counts nowhere)."""
        ...

    def settle(self, admission: Admission, used: Usage) -> None:
        """The request is over: free its slot, count its actual tokens and cost. Once per admission."""
        ...

    def usage(self, client: str, limits: Limits) -> ClientUsage:
        """The client's current usage against its limits (GET /v1/limits)."""
        ...

    @property
    def shared(self) -> bool:
        """Whether counts are those of every process (a reachable shared store) or of this one."""
        ...


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


def budget_refusal(client: str, limits: Limits, spent_day: float, spent_month: float, now: float) -> None:
    """Raise LimitExceeded(budget_exceeded) when `client` has spent a budget, naming when it resets."""
    day_end, month_end = window_resets(now)
    for budget, spent, resets, window in (
        (limits.budget_usd_per_day, spent_day, day_end, "daily"),
        (limits.budget_usd_per_month, spent_month, month_end, "monthly"),
    ):
        if budget is not None and spent >= budget:
            wait = (resets - datetime.fromtimestamp(now, UTC)).total_seconds()
            raise LimitExceeded(
                f"Client {client!r} has spent its {window} budget of {dollars(budget)} ({dollars(spent)} "
                f"spent); it resets at {resets:%Y-%m-%d %H:%M} UTC, in {duration_text(wait)}.",
                retry_after=math.ceil(wait),
                code="budget_exceeded",
            )


def refusal_over_rpm(client: str, limits: Limits, wait: float) -> LimitExceeded:
    return LimitExceeded(
        f"Client {client!r} is over its limit of {limits.rpm} requests a minute.", retry_after=math.ceil(wait)
    )


def refusal_over_concurrency(client: str, limits: Limits) -> LimitExceeded:
    return LimitExceeded(
        f"Client {client!r} already has {limits.max_concurrent} requests in flight, its limit; "
        "retry when one has finished.",
        retry_after=1,
    )


def refusal_over_tpm(client: str, limits: Limits, estimate: int, wait: float) -> LimitExceeded:
    if limits.tpm is not None and estimate > limits.tpm:
        return LimitExceeded(
            f"The request may use about {estimate:,} tokens, more than client {client!r}'s limit of "
            f"{limits.tpm:,} tokens a minute; send less, or ask for fewer (max_tokens).",
            retry_after=60,
            code="tokens_exceeded",
        )
    return LimitExceeded(
        f"Client {client!r} is over its limit of {limits.tpm:,} tokens a minute "
        f"(this request may use about {estimate:,}).",
        retry_after=math.ceil(wait),
        code="tokens_exceeded",
    )


@dataclass
class _Client:
    admitted: deque[float] = field(default_factory=deque)  # times of requests in the window
    # Tokens reserved or used, by the second they were reserved in (as the shared store counts
    # them): a limit check adds up at most 61 numbers, however many requests the minute held.
    tokens: dict[int, float] = field(default_factory=dict)
    in_flight: set[str] = field(default_factory=set)
    spent: dict[str, float] = field(default_factory=dict)  # budget window -> USD


class PerMinute:
    """At most `most` events a sliding minute for each client, counted in this process, where a
    client's limits do not apply (reading them: `GET /v1/limits`). Safe to share between threads."""

    def __init__(self, most: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.most = most
        self.clock = clock
        self._times: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when `client` has an event left this minute (and it is counted), else the seconds
        until it has one."""
        with self._lock:
            now = self.clock()
            times = self._times.setdefault(client, deque())
            while times and times[0] <= now - WINDOW_SECONDS:
                times.popleft()
            if len(times) >= self.most:
                return times[0] + WINDOW_SECONDS - now
            times.append(now)
            return 0.0


class LocalLimiter:
    """Counts in this process. Safe to share between threads and greenlets."""

    shared = False

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._clients: dict[str, _Client] = {}
        self._lock = threading.Lock()

    def admit(self, client: str, limits: Limits, estimate: int) -> Admission:
        with self._lock:
            counts = self._clients.setdefault(client, _Client())
            now = self.clock()
            self._expire(counts, now)
            day, month = windows(now)
            spent_day, spent_month = counts.spent.get(day, 0.0), counts.spent.get(month, 0.0)
            if len(counts.admitted) >= limits.rpm:
                # The oldest admitted request leaves the window first; room opens then.
                raise refusal_over_rpm(client, limits, counts.admitted[-limits.rpm] + WINDOW_SECONDS - now)
            if len(counts.in_flight) >= limits.max_concurrent:
                raise refusal_over_concurrency(client, limits)
            used_tokens = sum(counts.tokens.values())
            if limits.tpm is not None and used_tokens + estimate > limits.tpm:
                raise refusal_over_tpm(
                    client, limits, estimate, self._tokens_free_in(counts, limits, estimate, now)
                )
            budget_refusal(client, limits, spent_day, spent_month, now)
            admission = Admission(client, limits, estimate if limits.tpm is not None else 0, now)
            counts.admitted.append(now)
            counts.in_flight.add(admission.lease)
            admission.in_flight = len(counts.in_flight)
            if limits.tpm is not None:
                second = admission.token_second
                counts.tokens[second] = counts.tokens.get(second, 0.0) + estimate
            admission.remaining_requests = limits.rpm - len(counts.admitted)
            admission.reset_requests = counts.admitted[0] + WINDOW_SECONDS - now
            if limits.tpm is not None:
                admission.remaining_tokens = int(limits.tpm - used_tokens - estimate)
                admission.reset_tokens = min(counts.tokens) + WINDOW_SECONDS - now
            admission.spent_day, admission.spent_month = spent_day, spent_month
            return admission

    def settle(self, admission: Admission, used: Usage) -> None:
        with self._lock:
            if admission.settled:
                return
            admission.settled = True
            counts = self._clients.setdefault(admission.client, _Client())
            counts.in_flight.discard(admission.lease)
            second = admission.token_second
            if admission.limits.tpm is not None and second in counts.tokens:
                # The estimate, replaced by what was used (unless its second has left the window).
                counts.tokens[second] += used.tokens - admission.reserved_tokens
            if used.cost_usd:
                day, month = windows(admission.admitted_at)
                for window in (day, month):
                    counts.spent[window] = counts.spent.get(window, 0.0) + used.cost_usd

    def usage(self, client: str, limits: Limits) -> ClientUsage:
        with self._lock:
            counts = self._clients.setdefault(client, _Client())
            now = self.clock()
            self._expire(counts, now)
            day, month = windows(now)
            return {
                "requests_last_minute": len(counts.admitted),
                "tokens_last_minute": int(sum(counts.tokens.values())),
                "in_flight": len(counts.in_flight),
                "spent_usd_today": round(counts.spent.get(day, 0.0), 6),
                "spent_usd_this_month": round(counts.spent.get(month, 0.0), 6),
            }

    def in_flight(self, client: str) -> int:
        with self._lock:
            counts = self._clients.get(client)
            return len(counts.in_flight) if counts else 0

    @staticmethod
    def _expire(counts: _Client, now: float) -> None:
        while counts.admitted and counts.admitted[0] <= now - WINDOW_SECONDS:
            counts.admitted.popleft()
        horizon = math.floor(now - WINDOW_SECONDS)
        for second in [second for second in counts.tokens if second <= horizon]:
            del counts.tokens[second]
        day, month = windows(now)
        for window in [w for w in counts.spent if w not in (day, month)]:
            del counts.spent[window]

    @staticmethod
    def _tokens_free_in(counts: _Client, limits: Limits, estimate: int, now: float) -> float:
        """Seconds until enough reserved tokens leave the window for `estimate` to fit."""
        needed = sum(counts.tokens.values()) + estimate - (limits.tpm or 0)
        for second, tokens in sorted(counts.tokens.items()):
            needed -= tokens
            if needed <= 0:
                return second + WINDOW_SECONDS - now
        return WINDOW_SECONDS
