"""One record per request, written once the answer has been sent or abandoned: the access line
(method, path, status, duration, client) on the logger `service.access`, which is also the
request's metrics record, and, when a scraper may read them, the same figures in Prometheus'.

With LOG_FORMAT=json the access line is a CloudWatch Embedded Metric Format (EMF) document: its
`_aws` member tells CloudWatch Logs which of its top-level members are metrics and dimensions, so
the log group alone publishes them (no agent, no API call on the request path). The names follow
the contract the dashboard and alarms were built on (`infra_cdk/service_metrics.py`); every
directive has the `Environment` dimension:

    [Environment]                      Requests, Errors, Latency, UpstreamLatency, TimeToFirstToken,
                                       PromptTokens, CompletionTokens, CostUSD, BudgetUsedPercent,
                                       CacheHits, CacheMisses, SavedUSD (the answer cache)
    [Environment, Route, StatusClass]  Requests
    [Environment, Client], [Environment, Model], [Environment, Credential]
                                       PromptTokens, CompletionTokens, CostUSD
    [Environment, Client]              BudgetUsedPercent (clients with a budget)
    [Environment, ErrorKind]           Errors (failed requests)
    [Environment]                      SafetyChecks.<phase>.<check>.<result> (Count) and
                                       SafetyLatency.<phase>.<check> (Milliseconds), per safety
                                       check the request ran (service.safety)
    [Environment, Client]              Requests
    [Environment, Client, Attribute]   Requests, CostUSD (requests of an end user whose token
                                       carries attributes: the value of the first one)

A request's safety checks are also listed, without text, in its `Safety` member (phase, check,
result, ms): one EMF document has one value per dimension, so the check is in the metric's name.

A request that names an end user (service.governance.end_users) also has `end_user` (their keyed
hash) and `attributes` (its token's configured claims) on its access line; Prometheus counts its
requests and cost by client and each attribute (`aiproxy_attributed_*`).

A figure a request does not have (no provider call, not a stream, no price) is left out rather
than written as 0, so it does not drag averages and percentiles down. The health check (`GET /`)
and `/metrics` itself write the access line only: the load balancer's and the scraper's own
traffic would otherwise outnumber the clients' on a quiet service.

Every dimension value (and Prometheus label) comes from a bounded set, so no client can create
metric series without end (each series is billed in CloudWatch and held in Prometheus' memory):
the route is the route's template, never the path, and `unmatched` when no route matched; the
client is a name from the key store (or `anonymous`); the credential the name of a secret the
configuration or the key store names (never its value); the status class is one of five; a model
name or error kind that is too long or has unusual characters becomes `other`, and so does any
new one beyond the first few dozen each process has seen (models: only once a provider served
them).

With AIPROXY_METRICS_KEY set, the same figures are added to this process's Prometheus metrics
(`service.ops.prometheus`), which `GET /metrics` gives (`service.edge.routes.metrics`).
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeGuard

from service.core.request_state import RequestState
from service.ops import lines, logformat

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
MAX_ATTRIBUTE_VALUES = 200  # values of end users' attributes (features, lessons...), all names together
MAX_CREDENTIALS = 50


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
        if isinstance(value, str) and (value in self._known or value in self._admitted):
            return value  # checked when it was first seen
        plain = plain_value(value)
        if plain is None:
            return OTHER
        if not admit or len(self._admitted) >= self._limit:
            return OTHER
        self._admitted.add(plain)
        return plain


def status_class(status: int) -> str:
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


# (Limits field, Admission field) of each budget window (service.governance.limits).
_BUDGETS = (("budget_usd_per_day", "spent_day"), ("budget_usd_per_month", "spent_month"))


def budget_used_percent(admission: Any, cost: float) -> float | None:
    """The highest share (%) of the client's daily or monthly budget spent once this request's
    cost is counted; None when the client has no budget. Read defensively: the admission comes from
    whichever limiter is configured."""
    limits = getattr(admission, "limits", None)
    if getattr(limits, "has_budget", True) is False:
        return None  # the common case: no budget to read
    shares = []
    for budget_name, spent_name in _BUDGETS:
        budget, spent = getattr(limits, budget_name, None), getattr(admission, spent_name, None)
        if _number(budget) and budget > 0 and _number(spent):
            shares.append(100 * (spent + cost) / budget)
    return round(max(shares), 3) if shares else None


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class RequestMetrics:
    """Writes each request's access line (an EMF document when `emf`) and Prometheus figures.

    `route_of(method, path)` names the route of a request that never reached Flask's routing (a
    refused client key, say), or None; `known_models` are the configured names, always kept;
    `count`, when given, adds each request's figures to the Prometheus metrics
    (`service.ops.prometheus.count`).
    """

    def __init__(
        self,
        *,
        environment: str | None = None,
        emf: bool = False,
        known_models: Iterable[str] = (),
        route_of: Callable[[str, str], str | None] | None = None,
        count: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.environment = plain_value(environment) or LOCAL_ENVIRONMENT
        self.emf = emf
        self._route_of = route_of
        self._models = BoundedValues(MAX_MODELS, known_models)
        self._error_kinds = BoundedValues(MAX_ERROR_KINDS)
        self._attribute_values = BoundedValues(MAX_ATTRIBUTE_VALUES)
        self._credentials = BoundedValues(MAX_CREDENTIALS)
        self._count = count

    def record(self, state: RequestState) -> None:
        status = state.status or 500
        fields: dict[str, Any] = {
            "request_id": state.id,
            "client": state.client,
            "duration_ms": state.elapsed_ms(),
        }
        end_user = state.end_user
        if end_user is not None:
            fields["end_user"] = end_user.hashed  # the keyed hash, never the id
            if end_user.attributes:
                fields["attributes"] = dict(end_user.attributes)
        if state.region is not None:
            fields["region"] = state.region  # an attribute of the record, not a dimension
        route = self.route(state)
        if route not in UNRECORDED_ROUTES:
            figures = self.figures(state, route, status, fields["duration_ms"])
            if self._count is not None:
                try:
                    self._count(figures)
                except Exception:  # a fault in the counting must not cost the request its access line
                    log.exception("Could not count request %s in the Prometheus metrics", state.id)
            if self.emf:
                if ATTRIBUTES in figures:  # for Prometheus only, not an EMF member
                    figures = {k: v for k, v in figures.items() if k != ATTRIBUTES}
                fields["_aws"] = emf_metadata(figures)
                fields.update(figures)
        lines.write_soon(access_log, "%s %s %s", (state.method, state.path, status), fields)

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
            # Key store names are already plain (service.governance.auth.CLIENT_NAME), and bounded by
            # the store.
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
            if used.credential is not None:
                figures["Credential"] = self._credentials(used.credential)
            if _number(used.cost_usd) and used.cost_usd >= 0:
                figures["CostUSD"] = used.cost_usd
        if used.first_token_ms is not None:
            figures["TimeToFirstToken"] = used.first_token_ms
        if state.safety_checks:
            figures["Safety"] = state.safety_checks
            for entry in state.safety_checks:
                counted = f"SafetyChecks.{entry['phase']}.{entry['check']}.{entry['result']}"
                figures[counted] = figures.get(counted, 0) + 1
                figures.setdefault(f"SafetyLatency.{entry['phase']}.{entry['check']}", []).append(entry["ms"])
        if state.cache is not None:  # the answer cache was looked at (service.edge.caching)
            hit = state.cache == "hit"
            figures["CacheHits"] = 1 if hit else 0
            figures["CacheMisses"] = 0 if hit else 1
            if hit and _number(state.saved_usd) and state.saved_usd >= 0:
                figures["SavedUSD"] = state.saved_usd
        attributes = state.end_user.attributes if state.end_user is not None else None
        if attributes:
            # Bounded: a lesson id is a dimension value, and every value a metric series.
            bounded = {name: self._attribute_values(value) for name, value in attributes.items()}
            figures["Attribute"] = next(iter(bounded.values()))
            figures[ATTRIBUTES] = bounded  # for Prometheus; not an EMF member
        if state.admission is not None:
            percent = budget_used_percent(state.admission, figures.get("CostUSD", 0.0))
            if percent is not None:
                figures["BudgetUsedPercent"] = percent
        return figures


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
    "CacheHits": "Count",
    "CacheMisses": "Count",
    "SavedUSD": "None",
}
_USAGE = ("PromptTokens", "CompletionTokens", "CostUSD")
ATTRIBUTES = "Attributes"  # the figure holding every attribute of the request (bounded values)


# The directives of each set of members seen (they depend on which members a request has, not on
# their values): most requests repeat a handful of sets, so each is built once. Bounded, since
# safety checks' names are part of the set.
_DIRECTIVES: dict[tuple[str, ...], tuple[list[dict[str, Any]], str]] = {}
MAX_DIRECTIVE_SETS = 256


def emf_document(figures: dict[str, Any]) -> dict[str, Any]:
    """The members to add to a JSON log line to make it an EMF document of `figures`."""
    return {"_aws": emf_metadata(figures), **figures}


def emf_metadata(figures: dict[str, Any]) -> dict[str, Any]:
    """The `_aws` member of the EMF document of `figures`."""
    members = tuple(figures)
    known = _DIRECTIVES.get(members)
    if known is None:
        directives = _directives(figures)
        known = directives, logformat.encode(directives)  # written as it is (logformat.Encoded)
        if len(_DIRECTIVES) < MAX_DIRECTIVE_SETS:
            _DIRECTIVES[members] = known
    directives, encoded = known
    # Timestamp: when the request ended, in milliseconds since the epoch (the spec's unit).
    timestamp = int(time.time() * 1000)
    return logformat.Encoded(
        {"Timestamp": timestamp, "CloudWatchMetrics": directives},
        f'{{"Timestamp":{timestamp},"CloudWatchMetrics":{encoded}}}',
    )


def _directives(figures: dict[str, Any]) -> list[dict[str, Any]]:
    def directive(dimension_sets: list[list[str]], names: Iterable[str]) -> dict[str, Any]:
        metrics = [{"Name": name, "Unit": _UNITS[name]} for name in names if name in figures]
        return {"Namespace": NAMESPACE, "Dimensions": dimension_sets, "Metrics": metrics}

    env = "Environment"
    directives = [
        directive([[env]], _UNITS),
        directive([[env, "Route", "StatusClass"]], ["Requests"]),
    ]
    if "PromptTokens" in figures:
        by = [[env, "Client"], *([env, name] for name in ("Model", "Credential") if name in figures)]
        directives.append(directive(by, _USAGE))
    if "BudgetUsedPercent" in figures:
        directives.append(directive([[env, "Client"]], ["BudgetUsedPercent"]))
    if "ErrorKind" in figures:
        directives.append(directive([[env, "ErrorKind"]], ["Errors"]))
    if "Safety" in figures:
        safety = [
            {"Name": name, "Unit": "Count" if name.startswith("SafetyChecks.") else "Milliseconds"}
            for name in figures
            if name.startswith(("SafetyChecks.", "SafetyLatency."))
        ]
        directives.append({"Namespace": NAMESPACE, "Dimensions": [[env]], "Metrics": safety})
    directives.append(directive([[env, "Client"]], ["Requests"]))
    if "Attribute" in figures:
        directives.append(directive([[env, "Client", "Attribute"]], ["Requests", "CostUSD"]))
    return directives
