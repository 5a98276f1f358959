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

A request may also name an end user of the client (`service.governance.end_users`): their own
limits (`service.governance.end_user_limits`) are checked in the same admission, and a token that
may be used once is remembered until it expires (a second use is a 401).

`LocalLimiter` counts in this process (the embedded default for one process);
`service.governance.shared_limits.SharedLimiter` counts in Redis/Valkey for every process and task.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol, TypedDict

from service.core.errors import LimitExceeded, Unauthenticated
from service.core.request_state import Usage, new_id
from service.governance import end_user_limits
from service.governance.end_user_limits import EndUserAdmission, EndUserUsage
from service.governance.end_users import EndUser
from service.governance.windows import (
    WINDOW_SECONDS,
    Counts,
    dollars,
    duration_text,
    window_resets,
    windows,
)

if TYPE_CHECKING:
    from service.store.connections import Along  # a server without a store imports no Redis client

__all__ = [
    "WINDOW_SECONDS",
    "Admission",
    "LimitExceeded",
    "Limiter",
    "Limits",
    "LocalLimiter",
    "dollars",
    "duration_text",
    "window_resets",
    "windows",
]
REPLAYED = "it was used before (its issuer lets each token be used once)"


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
    lease: str = field(default_factory=new_id)  # 32 random hex digits, unique across processes
    remaining_requests: int = 0
    reset_requests: float = 0.0  # seconds until the window has room for one more request
    remaining_tokens: int | None = None
    reset_tokens: float = 0.0
    spent_day: float = 0.0
    spent_month: float = 0.0
    in_flight: int = 0  # the client's requests in flight, this one included
    local: bool = True  # counted in this process (no store, or the store failed)
    settled: bool = False
    end_user: EndUserAdmission | None = None  # the end user's own limits, when they have some

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
            or (self.end_user is not None and self.end_user.settles_first)
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
    def admit(
        self,
        client: str,
        limits: Limits,
        estimate: int,
        end_user: EndUser | None = None,
        along: Along | None = None,
    ) -> Admission:
        """Admit one request of `client` (and of its `end_user`) or raise LimitExceeded (a refused
        request counts nowhere), or Unauthenticated for a token used before. A shared limiter
        sends `along` (a store read the request needs next) with its call, one round trip for both."""
        ...

    def settle(self, admission: Admission, used: Usage) -> None:
        """The request is over: free its slot, count its actual tokens and cost. Once per admission."""
        ...

    def usage(self, client: str, limits: Limits) -> ClientUsage:
        """The client's current usage against its limits (GET /v1/limits)."""
        ...

    def end_user_usage(self, client: str, end_user: EndUser) -> EndUserUsage:
        """The end user's current usage against their limits (GET /v1/limits with a token)."""
        ...

    @property
    def shared(self) -> bool:
        """Whether counts are those of every process (a reachable shared store) or of this one."""
        ...


def budget_refusal(client: str, limits: Limits, spent_day: float, spent_month: float, now: float) -> None:
    """Raise LimitExceeded(budget_exceeded) when `client` has spent a budget, naming when it resets."""
    if not limits.has_budget:
        return
    for budget, spent, which, window in (
        (limits.budget_usd_per_day, spent_day, 0, "daily"),
        (limits.budget_usd_per_month, spent_month, 1, "monthly"),
    ):
        if budget is not None and spent >= budget:
            resets = window_resets(now)[which]
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


def replayed() -> Unauthenticated:
    return Unauthenticated(
        f"The end-user token is not valid: {REPLAYED}.",
        code="invalid_end_user_token",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def end_user_key(client: str, end_user: str) -> str:
    """Where this process counts the end user of hash `end_user` of `client` (admission, settling
    and usage alike)."""
    return f"{client}/{end_user}"


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
    PRUNE_EVERY = 10000  # admissions between two sweeps of end users with nothing left to count

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._clients: dict[str, Counts] = {}
        self._end_users: dict[str, Counts] = {}
        self._seen: dict[str, float] = {}  # token ids used once already -> their expiry
        self._admissions = 0
        self._lock = threading.Lock()

    def admit(
        self,
        client: str,
        limits: Limits,
        estimate: int,
        end_user: EndUser | None = None,
        along: Along | None = None,
    ) -> Admission:
        with self._lock:
            now = self.clock()
            if end_user is not None and self._seen.get(f"{client}/{end_user.token_id}", 0) > now:
                raise replayed()  # only ids that may be used once are remembered
            counts = self._counts(self._clients, client, now)
            day, month = windows(now)
            spent_day, spent_month = counts.spent.get(day, 0.0), counts.spent.get(month, 0.0)
            if len(counts.admitted) >= limits.rpm:
                # The oldest admitted request leaves the window first; room opens then.
                raise refusal_over_rpm(client, limits, counts.admitted[-limits.rpm] + WINDOW_SECONDS - now)
            if len(counts.in_flight) >= limits.max_concurrent:
                raise refusal_over_concurrency(client, limits)
            used_tokens = sum(counts.tokens.values())
            if limits.tpm is not None and used_tokens + estimate > limits.tpm:
                wait = counts.tokens_free_in(limits.tpm, estimate, now)
                raise refusal_over_tpm(client, limits, estimate, wait)
            budget_refusal(client, limits, spent_day, spent_month, now)
            user_counts = None
            if end_user is not None and end_user.limits is not None:
                user_counts = self._counts(self._end_users, end_user_key(client, end_user.hashed), now)
                end_user_limits.check_locally(user_counts, client, end_user.limits, estimate, now)
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
            if end_user is not None:
                self._admit_end_user(admission, client, end_user, user_counts, estimate, now)
            return admission

    def _admit_end_user(
        self,
        admission: Admission,
        client: str,
        end_user: EndUser,
        counts: Counts | None,
        estimate: int,
        now: float,
    ) -> None:
        if end_user.reject_replay and end_user.token_id is not None:
            self._seen[f"{client}/{end_user.token_id}"] = end_user.expires or now + WINDOW_SECONDS
        if counts is not None and end_user.limits is not None:
            reserved = estimate if end_user.limits.tpm is not None else 0
            admission.end_user = EndUserAdmission(end_user.hashed, end_user.limits, reserved)
            end_user_limits.record_locally(counts, admission.end_user, admission.lease, now)
        self._admissions += 1
        if self._admissions % self.PRUNE_EVERY == 0:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Forget end users with nothing left to count, and token ids past their expiry."""
        for key, counts in list(self._end_users.items()):
            counts.expire(now)
            if counts.empty:
                del self._end_users[key]
        for token, expires in list(self._seen.items()):
            if expires <= now:
                del self._seen[token]

    def settle(self, admission: Admission, used: Usage) -> None:
        with self._lock:
            if admission.settled:
                return
            admission.settled = True
            counts = self._clients.get(admission.client)
            if counts is None:
                counts = self._clients[admission.client] = Counts()
            counts.in_flight.discard(admission.lease)
            second = admission.token_second
            if admission.limits.tpm is not None and second in counts.tokens:
                # The estimate, replaced by what was used (unless its second has left the window).
                counts.tokens[second] += used.tokens - admission.reserved_tokens
            if used.cost_usd:
                day, month = windows(admission.admitted_at)
                for window in (day, month):
                    counts.spent[window] = counts.spent.get(window, 0.0) + used.cost_usd
            if admission.end_user is not None:
                key = end_user_key(admission.client, admission.end_user.hashed)
                end_user_limits.settle_locally(
                    self._end_users.setdefault(key, Counts()),
                    admission.end_user,
                    admission.lease,
                    second,
                    used.tokens,
                    used.cost_usd or 0.0,
                    admission.admitted_at,
                )

    def usage(self, client: str, limits: Limits) -> ClientUsage:
        with self._lock:
            counts = self._counts(self._clients, client, self.clock())
            day, month = windows(self.clock())
            return {
                "requests_last_minute": len(counts.admitted),
                "tokens_last_minute": int(sum(counts.tokens.values())),
                "in_flight": len(counts.in_flight),
                "spent_usd_today": round(counts.spent.get(day, 0.0), 6),
                "spent_usd_this_month": round(counts.spent.get(month, 0.0), 6),
            }

    def end_user_usage(self, client: str, end_user: EndUser) -> EndUserUsage:
        with self._lock:
            now = self.clock()
            counts = self._end_users.get(end_user_key(client, end_user.hashed))
            if counts is None:
                return end_user_limits.usage_of(Counts(), now)
            counts.expire(now)
            return end_user_limits.usage_of(counts, now)

    def in_flight(self, client: str) -> int:
        with self._lock:
            counts = self._clients.get(client)
            return len(counts.in_flight) if counts else 0

    @staticmethod
    def _counts(table: dict[str, Counts], key: str, now: float) -> Counts:
        counts = table.get(key)
        if counts is None:
            counts = table[key] = Counts()
        else:
            counts.expire(now)
        return counts
