"""One record per request, written once the answer has been sent or abandoned: the access line
(method, path, status, duration, client) on the logger `service.access`, which is also the
request's metrics record, and the same figures in this process's Prometheus metrics.

With LOG_FORMAT=json the access line is a CloudWatch Embedded Metric Format (EMF) document: its
`_aws` member tells CloudWatch Logs which of its top-level members are metrics and dimensions, so
the log group alone publishes them (no agent, no API call on the request path). The names follow
the contract the dashboard and alarms were built on (`infra_cdk/service_metrics.py`); every
directive has the `Environment` dimension:

    [Environment]                      Requests, Errors, Latency, UpstreamLatency, TimeToFirstToken,
                                       PromptTokens, CompletionTokens, CostUSD, BudgetUsedPercent
    [Environment, Route, StatusClass]  Requests
    [Environment, Client], [Environment, Model]   PromptTokens, CompletionTokens, CostUSD
    [Environment, Client]              BudgetUsedPercent (clients with a budget)
    [Environment, ErrorKind]           Errors (failed requests)

A figure a request does not have (no provider call, not a stream, no price) is left out rather
than written as 0, so it does not drag averages and percentiles down. The health check (`GET /`)
and `/metrics` itself write the access line only: the load balancer's and the scraper's own
traffic would otherwise outnumber the clients' on a quiet service.

Every dimension value (and Prometheus label) comes from a bounded set, so no client can create
metric series without end (each series is billed in CloudWatch and held in Prometheus' memory):
the route is the route's template, never the path, and `unmatched` when no route matched; the
client is a name from the key store (or `anonymous`); the status class is one of five; a model
name or error kind that is too long or has unusual characters becomes `other`, and so does any
new one beyond the first few dozen each process has seen (models: only once a provider served
them).

`GET /metrics` gives the Prometheus metrics (`service.routes.metrics`). The server runs several
worker processes; with PROMETHEUS_MULTIPROC_DIR set (the gunicorn master does it, service.server)
each writes its figures to files there and a scrape adds up the files of every worker, dead ones
included.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.request_state import RequestState

access_log = logging.getLogger("service.access")
log = logging.getLogger(__name__)

# The contract (infra_cdk/service_metrics.py); the service does not import the CDK app.
NAMESPACE = "AIProxy"
LOCAL_ENVIRONMENT = "local"  # ENVIRONMENT is empty when the proxy runs on a workstation
OTHER = "other"  # what an unknown or unusable dimension value is folded into
UNMATCHED = "unmatched"  # the route of a request no route matched (a 404, or refused before routing)
# Requests that are not the clients': the load balancer's health check and the scraper.
UNRECORDED_ROUTES = frozenset({"/", "/metrics"})

# A dimension value made of these, at most this long, is kept; anything else is `other`.
# Model names and Bedrock ids fit (`meta-llama/Llama-3.1-8B`, `us.amazon.nova-lite-v1:0`).
MAX_VALUE_LENGTH = 100
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
# New values each process accepts before folding the rest into `other`.
MAX_MODELS = 50
MAX_ERROR_KINDS = 50

SECONDS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# This process's figures. In multiprocess mode the values live in the shared directory and a
# scrape reads them from there (`exposition`); the registry only matters without it.
_registry = CollectorRegistry()
REQUESTS = Counter(
    "aiproxy_requests", "Requests answered", ["route", "status_class", "client"], registry=_registry
)
ERRORS = Counter("aiproxy_errors", "Failed requests, by what went wrong", ["kind"], registry=_registry)
LATENCY = Histogram(
    "aiproxy_request_duration_seconds",
    "Time from the request's arrival to its answer's end",
    ["route"],
    buckets=SECONDS_BUCKETS,
    registry=_registry,
)
UPSTREAM_LATENCY = Histogram(
    "aiproxy_upstream_duration_seconds",
    "Time spent in provider calls, per request that made any",
    ["route"],
    buckets=SECONDS_BUCKETS,
    registry=_registry,
)
TIME_TO_FIRST_TOKEN = Histogram(
    "aiproxy_time_to_first_token_seconds",
    "Streams: time from the request's arrival to the first bytes of the answer",
    ["route"],
    buckets=SECONDS_BUCKETS,
    registry=_registry,
)
PROMPT_TOKENS = Counter(
    "aiproxy_prompt_tokens", "Prompt tokens the providers reported", ["client", "model"], registry=_registry
)
COMPLETION_TOKENS = Counter(
    "aiproxy_completion_tokens",
    "Completion tokens the providers reported",
    ["client", "model"],
    registry=_registry,
)
COST_USD = Counter(
    "aiproxy_cost_usd",
    "Cost of the provider calls with a known price",
    ["client", "model"],
    registry=_registry,
)
BUDGET_USED_PERCENT = Gauge(
    "aiproxy_budget_used_percent",
    "The client's highest share of its daily or monthly budget, as of its latest request",
    ["client"],
    # The value written last, by whichever worker (dead ones included): the client's latest request.
    multiprocess_mode="mostrecent",
    registry=_registry,
)


def exposition() -> tuple[bytes, str]:
    """This server's metrics in Prometheus' text format, and its content type."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(_registry), CONTENT_TYPE_LATEST


def plain_value(value: Any) -> str | None:
    """`value` when it is a short, plain string fit for a dimension; else None."""
    if isinstance(value, str) and len(value) <= MAX_VALUE_LENGTH and _PLAIN_VALUE.fullmatch(value):
        return value
    return None


class BoundedValues:
    """The values one dimension may take in this process: the known ones, plus the first `limit`
    new ones admitted; anything else is `other`."""

    def __init__(self, limit: int, known: Iterable[str] = ()) -> None:
        self._known = {value for value in map(plain_value, known) if value}
        self._admitted: set[str] = set()
        self._limit = limit

    def __call__(self, value: Any, *, admit: bool = True) -> str:
        plain = plain_value(value)
        if plain is None:
            return OTHER
        if plain in self._known or plain in self._admitted:
            return plain
        if not admit or len(self._admitted) >= self._limit:
            return OTHER
        self._admitted.add(plain)
        return plain


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


# (Limits field, Admission field) of each budget window (service.limits).
_BUDGETS = (("budget_usd_per_day", "spent_day"), ("budget_usd_per_month", "spent_month"))


def budget_used_percent(admission: Any, cost: float) -> float | None:
    """The highest share (%) of the client's daily or monthly budget spent once this request's
    cost is counted; None when the client has no budget. Read defensively: the admission comes from
    whichever limiter is configured."""
    limits = getattr(admission, "limits", None)
    shares = []
    for budget_name, spent_name in _BUDGETS:
        budget, spent = getattr(limits, budget_name, None), getattr(admission, spent_name, None)
        if _number(budget) and budget > 0 and _number(spent):
            shares.append(100 * (spent + cost) / budget)
    return round(max(shares), 3) if shares else None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class RequestMetrics:
    """Writes each request's access line (an EMF document when `emf`) and Prometheus figures.

    `route_of(method, path)` names the route of a request that never reached Flask's routing (a
    refused client key, say), or None; `known_models` are the configured names, always kept.
    """

    def __init__(
        self,
        *,
        environment: str | None = None,
        emf: bool = False,
        known_models: Iterable[str] = (),
        route_of: Callable[[str, str], str | None] | None = None,
    ) -> None:
        self.environment = plain_value(environment) or LOCAL_ENVIRONMENT
        self.emf = emf
        self._route_of = route_of
        self._models = BoundedValues(MAX_MODELS, known_models)
        self._error_kinds = BoundedValues(MAX_ERROR_KINDS)

    def record(self, state: RequestState) -> None:
        status = state.status or 500
        fields: dict[str, Any] = {
            "request_id": state.id,
            "client": state.client,
            "duration_ms": state.elapsed_ms(),
        }
        route = self.route(state)
        if route not in UNRECORDED_ROUTES:
            figures = self.figures(state, route, status, fields["duration_ms"])
            try:
                self._count(figures)
            except Exception:  # a fault in the counting must not cost the request its access line
                log.exception("Could not count request %s in the Prometheus metrics", state.id)
            if self.emf:
                fields.update(emf_document(figures))
        access_log.info("%s %s %s", state.method, state.path, status, extra=fields)

    def route(self, state: RequestState) -> str:
        if state.route:
            return state.route
        found = self._route_of(state.method, state.path) if self._route_of else None
        return found or UNMATCHED

    def figures(self, state: RequestState, route: str, status: int, latency_ms: float) -> dict[str, Any]:
        """The request's dimensions and metric values, under the contract's names."""
        used = state.used
        failed = status >= 400 or used.error is not None
        figures: dict[str, Any] = {
            "Environment": self.environment,
            # Key store names are already plain (service.auth.CLIENT_NAME), and bounded by the store.
            "Client": plain_value(state.client) or OTHER,
            "Route": route,
            "StatusClass": status_class(status),
            "Requests": 1,
            "Errors": 1 if failed else 0,
            "Latency": latency_ms,
        }
        if failed:
            # The kind of the error answered, else the provider call's (a stream cut after its start).
            kind = state.error_kind or used.error
            figures["ErrorKind"] = self._error_kinds(kind)
        if used.calls:
            figures["UpstreamLatency"] = used.upstream_ms or 0.0
            # As reported, but never below 0: a counter cannot go down.
            figures["PromptTokens"] = max(0, used.prompt_tokens)
            figures["CompletionTokens"] = max(0, used.completion_tokens)
            if used.model is not None:
                # A name the provider served may be kept; one it refused (a typo, junk) may not.
                figures["Model"] = self._models(used.model, admit=not failed)
            if _number(used.cost_usd) and used.cost_usd >= 0:
                figures["CostUSD"] = used.cost_usd
        if used.first_token_ms is not None:
            figures["TimeToFirstToken"] = used.first_token_ms
        if state.admission is not None:
            percent = budget_used_percent(state.admission, figures.get("CostUSD", 0.0))
            if percent is not None:
                figures["BudgetUsedPercent"] = percent
        return figures

    @staticmethod
    def _count(figures: dict[str, Any]) -> None:
        client, route = figures["Client"], figures["Route"]
        REQUESTS.labels(route, figures["StatusClass"], client).inc()
        if "ErrorKind" in figures:
            ERRORS.labels(figures["ErrorKind"]).inc()
        LATENCY.labels(route).observe(figures["Latency"] / 1000)
        if "UpstreamLatency" in figures:
            UPSTREAM_LATENCY.labels(route).observe(figures["UpstreamLatency"] / 1000)
        if "TimeToFirstToken" in figures:
            TIME_TO_FIRST_TOKEN.labels(route).observe(figures["TimeToFirstToken"] / 1000)
        if "PromptTokens" in figures:
            model = figures.get("Model", OTHER)
            PROMPT_TOKENS.labels(client, model).inc(figures["PromptTokens"])
            COMPLETION_TOKENS.labels(client, model).inc(figures["CompletionTokens"])
            if "CostUSD" in figures:
                COST_USD.labels(client, model).inc(figures["CostUSD"])
        if "BudgetUsedPercent" in figures:
            BUDGET_USED_PERCENT.labels(client).set(figures["BudgetUsedPercent"])


# Each metric's unit, in the order the [Environment] directive lists those a request has.
_UNITS = {
    "Requests": "Count",
    "Errors": "Count",
    "Latency": "Milliseconds",
    "UpstreamLatency": "Milliseconds",
    "TimeToFirstToken": "Milliseconds",
    "PromptTokens": "Count",
    "CompletionTokens": "Count",
    "CostUSD": "None",
    "BudgetUsedPercent": "Percent",
}
_USAGE = ("PromptTokens", "CompletionTokens", "CostUSD")


def emf_document(figures: dict[str, Any]) -> dict[str, Any]:
    """The members to add to a JSON log line to make it an EMF document of `figures`."""

    def directive(dimension_sets: list[list[str]], names: Iterable[str]) -> dict[str, Any]:
        metrics = [{"Name": name, "Unit": _UNITS[name]} for name in names if name in figures]
        return {"Namespace": NAMESPACE, "Dimensions": dimension_sets, "Metrics": metrics}

    env = "Environment"
    directives = [
        directive([[env]], _UNITS),
        directive([[env, "Route", "StatusClass"]], ["Requests"]),
    ]
    if "PromptTokens" in figures:
        by = [[env, "Client"], [env, "Model"]] if "Model" in figures else [[env, "Client"]]
        directives.append(directive(by, _USAGE))
    if "BudgetUsedPercent" in figures:
        directives.append(directive([[env, "Client"]], ["BudgetUsedPercent"]))
    if "ErrorKind" in figures:
        directives.append(directive([[env, "ErrorKind"]], ["Errors"]))
    # Timestamp: when the request ended, in milliseconds since the epoch (the spec's unit).
    return {"_aws": {"Timestamp": int(time.time() * 1000), "CloudWatchMetrics": directives}, **figures}
