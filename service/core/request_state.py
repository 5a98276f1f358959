"""The state of the request being handled: one typed object, set by the request pipeline.

`current()` gives it anywhere while a request is handled (log lines, usage records, routes), and
None outside one. It lives in a context variable: under gevent every greenlet, so every request,
has its own. The pipeline starts it before anything else and ends it once the answer is closed,
so a stream's last log lines still name their request.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypedDict

_random_bits = random.getrandbits
ANONYMOUS = "anonymous"  # what logs show for requests without a client
NO_CREDENTIALS: Mapping[str, str] = MappingProxyType({})  # a client naming none: the upstreams' own


@dataclass
class Usage:
    """What the provider calls of one request used, summed (filled in by `service.usage`)."""

    calls: int = 0
    model: str | None = None  # the last call's
    deployment: str | None = None  # the last call's: which upstream (or Bedrock) served it
    credential: str | None = None  # the last call's: the name of the secret that paid for it
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None until a call with a known price
    unpriced: bool = False  # a call whose model has no price
    upstream_ms: float | None = None
    first_token_ms: float | None = None  # streams: when the first bytes reached the client
    error: str | None = None  # the last call's failure, if any

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class SafetyCheckRun(TypedDict):
    """One safety check run for the request (`service.safety.runner.record`), as metrics show it."""

    phase: str  # "input" or "output"
    check: str  # its kind: "blocklist", "pii", "judge", ...
    result: str  # "passed", "flagged", "redacted", "error", ...
    ms: float


@dataclass(eq=False)
class RequestState:
    id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    client: str = ANONYMOUS
    # The client's limits (service.governance.limits.Limits), whether or not its request is counted
    # by them.
    limits: Any = None
    # The admitted client's limits and what admission reserved (service.governance.limits); None
    # when none apply.
    admission: Any = None
    # The end user the request names (service.governance.end_users.EndUser), if any: usage records
    # and metrics attribute it (by its keyed hash and its attributes, never its id).
    end_user: Any = None
    route: str | None = None  # the route's URL rule when it has one (else the path)
    used: Usage = field(default_factory=Usage)
    status: int | None = None  # the answer's status, once it is known
    error_kind: str | None = None  # the kind of the error answered, if one was (service.core.errors)
    client_socket: Any = None  # the client's connection, where the server hands it over
    prices: Any = None  # the app's price table (service.config.prices.PriceTable): usage records' cost
    safety_policy: str | None = None  # the client's safety policy (service.safety), if it has one
    safety_checks: list[SafetyCheckRun] | None = None  # each safety check run (metrics)
    # The client's answer cache (service.cache.settings.CacheSettings), None when it has none; and
    # what the cache did for this request: "hit", "miss" or None (not looked at), with what a hit saved.
    cache_settings: Any = None
    cache: str | None = None
    saved_usd: float | None = None
    # Where the request comes from: an ISO 3166-1 alpha-2 country code, or None when unknown. The
    # edge sets it from the AIPROXY_REGION_HEADER header; an end-user token's region claim may set
    # it instead. Model groups serve it only from deployments for that region (service.gateway.routing).
    region: str | None = None
    # The client's own credential (a secret's name) per upstream, from its key store entry.
    upstream_credentials: Mapping[str, str] = field(default_factory=lambda: NO_CREDENTIALS)
    model_asked: str | None = None  # the request's `model`, before aliases and routing

    @property
    def route_name(self) -> str:
        return self.route or self.path

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 1)


_current: ContextVar[RequestState | None] = ContextVar("aiproxy_request", default=None)


def current() -> RequestState | None:
    return _current.get()


def current_id() -> str:
    state = _current.get()
    return state.id if state else "-"


def begin(state: RequestState) -> Token[RequestState | None]:
    return _current.set(state)


def end(token: Token[RequestState | None]) -> None:
    try:
        _current.reset(token)
    except ValueError:  # ended in another context than it began (a test driving WSGI by hand)
        _current.set(None)


def new_id() -> str:
    """32 random hex digits (as uuid4().hex gave): a request id, an admission's lease.

    Neither is a secret (request ids are sent to clients and logged), so they come from the
    `random` module, which Python reseeds from the OS in every forked worker, not from a system
    call per request; 128 bits keep them unique across processes."""
    return f"{_random_bits(128):032x}"
