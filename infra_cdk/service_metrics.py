"""The service's own metrics (CloudWatch Embedded Metric Format in its log group), by name.

The contract with the service: namespace `AIProxy`, dimension `Environment` (the task's
ENVIRONMENT, the deployment's DNS name) in every dimension set: [Environment],
[Environment, Client], [Environment, Model], [Environment, Credential] (the name of the secret
that paid for a provider call), [Environment, Route, StatusClass], [Environment, Client,
Attribute] (end users' requests), and on failed requests [Environment, ErrorKind]. Alarms use
[Environment] (an alarm cannot SEARCH); dashboard
widgets break a metric down with SEARCH expressions.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch

NAMESPACE = "AIProxy"
ENVIRONMENT = "Environment"
CLIENT = "Client"
MODEL = "Model"
CREDENTIAL = "Credential"
ROUTE = "Route"
STATUS_CLASS = "StatusClass"
ERROR_KIND = "ErrorKind"
ATTRIBUTE = "Attribute"  # the first attribute of an end user's token (docs/end-users.md)

REQUESTS = "Requests"
ERRORS = "Errors"
LATENCY = "Latency"
UPSTREAM_LATENCY = "UpstreamLatency"
TIME_TO_FIRST_TOKEN = "TimeToFirstToken"
PROMPT_TOKENS = "PromptTokens"
COMPLETION_TOKENS = "CompletionTokens"
COST_USD = "CostUSD"
BUDGET_USED_PERCENT = "BudgetUsedPercent"
CACHE_HITS = "CacheHits"  # the answer cache: requests it answered,
CACHE_MISSES = "CacheMisses"  # ... and those of clients with a cache it did not
SAVED_USD = "SavedUSD"  # what the answers it gave cost when first asked

PERIOD = Duration.minutes(5)


def metric(name: str, environment: str, statistic: str, *, period: Duration = PERIOD) -> cloudwatch.Metric:
    """`name` over the whole environment (the [Environment] dimension set)."""
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={ENVIRONMENT: environment},
        statistic=statistic,
        period=period,
    )


def search(
    name: str, environment: str, statistic: str, *by: str, period: Duration = PERIOD
) -> cloudwatch.MathExpression:
    """One line per value of the dimensions `by` (e.g. per client), found with SEARCH."""
    schema = ",".join((NAMESPACE, ENVIRONMENT, *by))
    query = f'{{{schema}}} MetricName="{name}" {ENVIRONMENT}="{environment}"'
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{query}', '{statistic}', {int(period.to_seconds())})",
        using_metrics={},
        label="",
        period=period,
    )
