"""The state of the request being handled: one typed object, set by the request pipeline.

`current()` gives it anywhere while a request is handled (log lines, usage records, routes), and
None outside one. It lives in a context variable: under gevent every greenlet, so every request,
has its own. The pipeline starts it before anything else and ends it once the answer is closed,
so a stream's last log lines still name their request.
"""

from __future__ import annotations

import time
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

ANONYMOUS = "anonymous"  # what logs show for requests without a client


@dataclass
class Usage:
    """What the provider calls of one request used, summed (filled in by `service.usage`)."""

    calls: int = 0
    model: str | None = None  # the last call's
    deployment: str | None = None  # the last call's: which upstream (or Bedrock) served it
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
    route: str | None = None  # the route's URL rule when it has one (else the path)
    used: Usage = field(default_factory=Usage)
    status: int | None = None  # the answer's status, once it is known
    error_kind: str | None = None  # the kind of the error answered, if one was (service.core.errors)
    client_socket: Any = None  # the client's connection, where the server hands it over
    prices: Any = None  # the app's price table (service.config.prices.PriceTable): usage records' cost

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
    return uuid.uuid4().hex
