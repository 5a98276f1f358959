"""Limits and budgets of one end user (a student) of a client, counted beside the client's own.

A client's key store entry may set `"end_user": {...}` (docs/end-users.md): every end user the
client names (in a signed token, or with `X-AIProxy-End-User` when the entry trusts it) is then
held to these, each on their own, on top of the client's limits, so one student cannot spend what
belongs to all of them. Every field is optional:

- `rpm`, `tpm`, `max_concurrent`: as the client's (`service.governance.limits`);
- `tokens_per_day`: tokens used in a UTC day; the request that crosses it is the last admitted;
- `budget_usd_per_day`, `budget_usd_per_month`: spending, as the client's budgets.

Over `rpm`, `tpm`, `max_concurrent` or `tokens_per_day`: 429 `end_user_rate_limited`; over a
budget: 429 `end_user_budget_exceeded`; both with Retry-After. Other end users of the client go on.
This module parses the limits and checks them against one end user's `Counts` in this process;
the shared store runs the same checks in the same script as the client's
(`service/store/scripts/admit.lua`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, TypedDict

from service.core.errors import LimitExceeded
from service.governance.windows import (
    WINDOW_SECONDS,
    Counts,
    dollars,
    duration_text,
    seconds_to_midnight,
    window_resets,
    windows,
)

RATE_LIMITED = "end_user_rate_limited"
BUDGET_EXCEEDED = "end_user_budget_exceeded"
_MAX_COUNT = 100000
_MAX_TOKENS = 1_000_000_000
_MAX_BUDGET = 10_000_000.0


@dataclass(frozen=True)
class EndUserLimits:
    rpm: int | None = None
    tpm: int | None = None
    tokens_per_day: int | None = None
    max_concurrent: int | None = None
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None

    @property
    def has_budget(self) -> bool:
        return self.budget_usd_per_day is not None or self.budget_usd_per_month is not None

    def as_dict(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


FIELDS = tuple(field.name for field in fields(EndUserLimits))
_HIGHEST = {
    "rpm": _MAX_COUNT,
    "max_concurrent": _MAX_COUNT,
    "tpm": _MAX_TOKENS,
    "tokens_per_day": _MAX_TOKENS,
}


def parse_end_user_limits(value: Any, where: str) -> EndUserLimits:
    """The entry's `end_user` object; ValueError naming the field that is wrong."""
    if not isinstance(value, dict):
        raise ValueError(f'{where}: "end_user" must be an object of limits ({", ".join(FIELDS)})')
    unknown = [name for name in value if name not in FIELDS]
    if unknown:
        raise ValueError(f'{where}: "end_user" has unknown field(s); allowed: {", ".join(FIELDS)}')
    found: dict[str, Any] = {}
    for name, number in value.items():
        if number is None:
            continue
        if name.startswith("budget_"):
            amount = isinstance(number, int | float) and not isinstance(number, bool)
            if not amount or not 0 < number <= _MAX_BUDGET:
                raise ValueError(f'{where}: "end_user.{name}" must be an amount in US dollars above 0')
            found[name] = float(number)
        else:
            high = _HIGHEST[name]
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= high:
                raise ValueError(f'{where}: "end_user.{name}" must be a whole number from 1 to {high:,}')
            found[name] = number
    return EndUserLimits(**found)


@dataclass
class EndUserAdmission:
    """What admitting one request reserved for its end user."""

    hashed: str  # the end user's keyed hash (service.governance.end_users)
    limits: EndUserLimits
    reserved_tokens: int  # for a tpm
    in_flight: int = 0
    remaining_tokens: int | None = None

    @property
    def settles_first(self) -> bool:
        """As `Admission.settles_first`, for the end user's own limits."""
        limits = self.limits
        return (
            limits.has_budget
            or limits.tokens_per_day is not None
            or (limits.max_concurrent is not None and self.in_flight >= limits.max_concurrent)
            or (self.remaining_tokens is not None and self.remaining_tokens < self.reserved_tokens)
        )


def refusal(reason: int, client: str, limits: EndUserLimits, wait: float, estimate: int) -> LimitExceeded:
    """The 429 for `reason` (the admit script's numbers: 1 rpm, 2 slots, 3 tpm, 5 tokens a day)."""
    who = f"This end user of client {client!r}"
    if reason == 1:
        message = f"{who} is over their limit of {limits.rpm} requests a minute."
    elif reason == 2:
        message = f"{who} already has {limits.max_concurrent} requests in flight, their limit."
    elif reason == 3 and limits.tpm is not None and estimate > limits.tpm:
        message = f"The request may use about {estimate:,} tokens, more than {limits.tpm:,} a minute."
        wait = WINDOW_SECONDS
    elif reason == 3:
        message = f"{who} is over their limit of {limits.tpm:,} tokens a minute."
    else:
        message = f"{who} has used their {limits.tokens_per_day:,} tokens for today (UTC)."
    return LimitExceeded(
        f"{message} Retry in {duration_text(wait)}.", retry_after=max(1, math.ceil(wait)), code=RATE_LIMITED
    )


def budget_refusal(
    client: str, limits: EndUserLimits, spent_day: float, spent_month: float, now: float
) -> None:
    """Raise LimitExceeded(end_user_budget_exceeded) when a budget of the end user is spent."""
    day_end, month_end = window_resets(now)
    for budget, spent, resets, window in (
        (limits.budget_usd_per_day, spent_day, day_end, "daily"),
        (limits.budget_usd_per_month, spent_month, month_end, "monthly"),
    ):
        if budget is not None and spent >= budget:
            wait = resets.timestamp() - now
            raise LimitExceeded(
                f"This end user of client {client!r} has spent their {window} budget of {dollars(budget)}; "
                f"it resets at {resets:%Y-%m-%d %H:%M} UTC, in {duration_text(wait)}.",
                retry_after=max(1, math.ceil(wait)),
                code=BUDGET_EXCEEDED,
            )


def check_locally(counts: Counts, client: str, limits: EndUserLimits, estimate: int, now: float) -> None:
    """Raise the end user's refusal, if any, from their counts in this process (already expired)."""
    if limits.rpm is not None and len(counts.admitted) >= limits.rpm:
        raise refusal(1, client, limits, counts.admitted[-limits.rpm] + WINDOW_SECONDS - now, estimate)
    if limits.max_concurrent is not None and len(counts.in_flight) >= limits.max_concurrent:
        raise refusal(2, client, limits, 1, estimate)
    if limits.tpm is not None and sum(counts.tokens.values()) + estimate > limits.tpm:
        raise refusal(3, client, limits, counts.tokens_free_in(limits.tpm, estimate, now), estimate)
    day, month = windows(now)
    if limits.tokens_per_day is not None and counts.tokens_today.get(day, 0) >= limits.tokens_per_day:
        raise refusal(5, client, limits, seconds_to_midnight(now), estimate)
    budget_refusal(client, limits, counts.spent.get(day, 0.0), counts.spent.get(month, 0.0), now)


def record_locally(counts: Counts, admission: EndUserAdmission, lease: str, now: float) -> None:
    limits = admission.limits
    if limits.rpm is not None:
        counts.admitted.append(now)
    if limits.max_concurrent is not None:
        counts.in_flight.add(lease)
        admission.in_flight = len(counts.in_flight)
    if limits.tpm is not None:
        second = math.floor(now)
        counts.tokens[second] = counts.tokens.get(second, 0.0) + admission.reserved_tokens
        admission.remaining_tokens = int(limits.tpm - sum(counts.tokens.values()))


def settle_locally(
    counts: Counts, admission: EndUserAdmission, lease: str, second: int, tokens: int, cost: float, at: float
) -> None:
    counts.in_flight.discard(lease)
    if admission.limits.tpm is not None and second in counts.tokens:
        counts.tokens[second] += tokens - admission.reserved_tokens
    day, month = windows(at)
    if admission.limits.tokens_per_day is not None and tokens:
        counts.tokens_today[day] = counts.tokens_today.get(day, 0) + tokens
    if cost:
        for window in (day, month):
            counts.spent[window] = counts.spent.get(window, 0.0) + cost


class EndUserUsage(TypedDict):
    """What an end user has used of their limits (GET /v1/limits with their token)."""

    requests_last_minute: int
    tokens_last_minute: int
    tokens_today: int
    in_flight: int
    spent_usd_today: float
    spent_usd_this_month: float


def usage_of(counts: Counts, now: float) -> EndUserUsage:
    day, month = windows(now)
    return {
        "requests_last_minute": len(counts.admitted),
        "tokens_last_minute": int(sum(counts.tokens.values())),
        "tokens_today": counts.tokens_today.get(day, 0),
        "in_flight": len(counts.in_flight),
        "spent_usd_today": round(counts.spent.get(day, 0.0), 6),
        "spent_usd_this_month": round(counts.spent.get(month, 0.0), 6),
    }


def remaining(limits: EndUserLimits, used: EndUserUsage) -> dict[str, Any]:
    """What the end user has left of each limit (GET /v1/limits); None where no limit applies."""

    def left(limit: float | None, spent: float) -> float | None:
        return None if limit is None else max(0, round(limit - spent, 6))

    return {
        "requests_this_minute": left(limits.rpm, used["requests_last_minute"]),
        "tokens_this_minute": left(limits.tpm, used["tokens_last_minute"]),
        "tokens_today": left(limits.tokens_per_day, used["tokens_today"]),
        "in_flight": left(limits.max_concurrent, used["in_flight"]),
        "budget_usd_today": left(limits.budget_usd_per_day, used["spent_usd_today"]),
        "budget_usd_this_month": left(limits.budget_usd_per_month, used["spent_usd_this_month"]),
    }
