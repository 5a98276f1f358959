"""The request figures in Prometheus' text format, for `GET /metrics`: imported only when
AIPROXY_METRICS_KEY opens that route, so a server that nobody scrapes spends no memory or time on
them (the access line's EMF document carries the same figures to CloudWatch either way).

The server runs several worker processes; with PROMETHEUS_MULTIPROC_DIR set (the gunicorn master
does it, service.server.config) each writes its figures to files there and a scrape adds up the files of
every worker, dead ones included.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.ops.metrics import OTHER

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
CACHE_LOOKUPS = Counter(
    "aiproxy_cache_lookups",
    "Requests of clients with an answer cache, by whether the cache answered (hit) or not (miss)",
    ["route", "result"],
    registry=_registry,
)
CACHE_SAVED_USD = Counter(
    "aiproxy_cache_saved_usd",
    "What the answers from the cache cost when they were first asked",
    ["client"],
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
SAFETY_CHECKS = Counter(
    "aiproxy_safety_checks",
    "Safety checks run, by phase (input, output), check and result (passed, flagged, redacted, error)",
    ["phase", "check", "result"],
    registry=_registry,
)
SAFETY_LATENCY = Histogram(
    "aiproxy_safety_check_duration_seconds",
    "Time one safety check took",
    ["phase", "check"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=_registry,
)


ATTRIBUTED_REQUESTS = Counter(
    "aiproxy_attributed_requests",
    "Requests of end users, by client and by each attribute their tokens carry",
    ["client", "attribute", "value"],
    registry=_registry,
)
ATTRIBUTED_COST_USD = Counter(
    "aiproxy_attributed_cost_usd",
    "Cost of end users' requests, by client and by each attribute their tokens carry",
    ["client", "attribute", "value"],
    registry=_registry,
)


def exposition() -> tuple[bytes, str]:
    """This server's metrics in Prometheus' text format, and its content type."""
    if MULTIPROCESS:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(_registry), CONTENT_TYPE_LATEST


def count(figures: dict[str, Any]) -> None:
    """Add one request's figures (`service.ops.metrics.RequestMetrics.figures`)."""
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
    if "CacheHits" in figures:
        CACHE_LOOKUPS.labels(route, "hit" if figures["CacheHits"] else "miss").inc()
        if "SavedUSD" in figures:
            CACHE_SAVED_USD.labels(client).inc(figures["SavedUSD"])
    if "BudgetUsedPercent" in figures:
        BUDGET_USED_PERCENT.labels(client).set(figures["BudgetUsedPercent"])
    for check in figures.get("Safety", ()):
        SAFETY_CHECKS.labels(check["phase"], check["check"], check["result"]).inc()
        SAFETY_LATENCY.labels(check["phase"], check["check"]).observe(check["ms"] / 1000)
    for name, value in figures.get("Attributes", {}).items():
        ATTRIBUTED_REQUESTS.labels(client, name, value).inc()
        if "CostUSD" in figures:
            ATTRIBUTED_COST_USD.labels(client, name, value).inc(figures["CostUSD"])
