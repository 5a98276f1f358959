"""What every check shares: its outcome, the services it may call, and the parsing of its fields.

A check is a frozen dataclass built once from its policy entry (`service.safety.policy`); `run(text,
services)` answers an `Outcome` or raises `CheckFailed` (the runner applies the policy's
`on_error`). Outcomes name categories and scores, never the text checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from service.gateway.routing import Router

DEFAULT_TIMEOUT = 10.0  # seconds a check may take before it counts as failed
MAX_TIMEOUT = 120.0
COMMON_FIELDS = ("check", "timeout")


@dataclass(frozen=True)
class Outcome:
    flagged: bool
    categories: tuple[str, ...] = ()  # what was found (moderation categories, "words", ...)
    details: Mapping[str, Any] = field(default_factory=dict)  # scores and the like, never text


PASSED = Outcome(False)


class CheckFailed(Exception):
    """The check could not say (its provider failed, answered nonsense, or took too long)."""


class CheckCache(Protocol):
    """The answer cache as a check uses it (the app hands over `service.edge.caching.check_cache`):
    the JSON answer kept for the same `kind` of call to the same `model` with the same `body`, else
    `ask()`'s, kept for the next one. Only an answer is kept, never a failure (`ask` raising)."""

    def __call__(
        self, kind: str, model: str, body: Mapping[str, Any], ask: Callable[[], bytes], /
    ) -> bytes: ...


@dataclass(frozen=True)
class Services:
    """What checks call: the proxy's own routing, the settings' AWS sources (service.config.aws),
    and the answer cache for the model calls of clients whose entry turns it on."""

    router: Router
    source: Mapping[str, str]
    cache: CheckCache | None = None


@dataclass(frozen=True)
class Check:
    kind: ClassVar[str] = ""
    local: ClassVar[bool] = False  # answers without a network call (run first, inline)
    timeout: float = DEFAULT_TIMEOUT

    def run(self, text: str, services: Services) -> Outcome:
        raise NotImplementedError


def known_fields(entry: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(entry) - {*COMMON_FIELDS, *allowed})
    if unknown:
        listed = ", ".join((*COMMON_FIELDS, *allowed))
        raise ValueError(f"{where} has unknown field {str(unknown[0])[:40]!r}; allowed: {listed}")


def number(
    entry: Mapping[str, Any], name: str, where: str, low: float, high: float, default: float | None = None
) -> float | None:
    value = entry.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{where}: {name!r} must be a number from {low:g} to {high:g}")
    return float(value)


def timeout(entry: Mapping[str, Any], where: str) -> float:
    return number(entry, "timeout", where, 0.1, MAX_TIMEOUT, DEFAULT_TIMEOUT)  # type: ignore[return-value]


def text(entry: Mapping[str, Any], name: str, where: str, default: str | None = None) -> str:
    value = entry.get(name, default)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} needs {name!r}: a non-empty string")
    return value.strip()
