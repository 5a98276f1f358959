"""One CloudWatch dashboard per environment: traffic, latency, usage and cost, capacity, store.

Rows, top to bottom: requests and errors; latency and time to first token; tokens and cost by
client and by model; budgets and errors by kind; the answer cache's hit ratio and savings;
requests by client, and requests and cost by client and the first attribute of end users'
tokens; healthy hosts, tasks, CPU and memory; the shared limits store; the state of every alarm.
Usage panels break the service's metrics down with SEARCH, so a new client or model shows up
without a deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from infra_cdk import service_metrics as m

ELASTICACHE = "AWS/ElastiCache"
WIDTH = 24
FIVE_MINUTES = Duration.minutes(5)


def _graph(
    title: str, left: Sequence[cloudwatch.IMetric], *, width: int = 12, **options: Any
) -> cloudwatch.GraphWidget:  # `options`: GraphWidget's other keyword arguments
    return cloudwatch.GraphWidget(title=title, left=list(left), width=width, height=6, **options)


class ServiceDashboard(Construct):
    """Exposes `dashboard` and `url` (the console link, a stack output)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: str,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group: elbv2.ApplicationTargetGroup,
        service: ecs.FargateService,
        store_name: str,
        alarms: Sequence[cloudwatch.IAlarm],
        latency_p99_alarm_seconds: float,
    ) -> None:
        super().__init__(scope, construct_id)
        env = environment
        tg, lb = target_group.metrics, load_balancer.metrics
        service_dimensions = {
            "ClusterName": service.cluster.cluster_name,
            "ServiceName": service.service_name,
        }

        def store(name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=ELASTICACHE,
                metric_name=name,
                dimensions_map={"clusterId": store_name},
                statistic=statistic,
                period=FIVE_MINUTES,
            )

        def ecs_metric(namespace: str, name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=namespace,
                metric_name=name,
                dimensions_map=service_dimensions,
                statistic=statistic,
                period=Duration.minutes(1),
            )

        rows: list[list[cloudwatch.IWidget]] = [
            [
                cloudwatch.TextWidget(
                    markdown=f"# AI Proxy: {env}\nAlarms and what to do: docs/operations.md",
                    width=WIDTH,
                    height=2,
                )
            ],
            [
                _graph(
                    "Requests and errors",
                    [
                        m.metric(m.REQUESTS, env, "Sum"),
                        m.metric(m.ERRORS, env, "Sum"),
                        tg.request_count(period=FIVE_MINUTES, statistic="Sum", label="ALB requests"),
                        tg.http_code_target(elbv2.HttpCodeTarget.TARGET_5XX_COUNT, statistic="Sum"),
                        lb.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, statistic="Sum"),
                    ],
                ),
                _graph(
                    "Requests by route and status",
                    [m.search(m.REQUESTS, env, "Sum", m.ROUTE, m.STATUS_CLASS)],
                ),
            ],
            [
                _graph(
                    "Latency p50 / p99 (ms)",
                    [
                        m.metric(m.LATENCY, env, "p50"),
                        m.metric(m.LATENCY, env, "p99"),
                        m.metric(m.UPSTREAM_LATENCY, env, "p50"),
                        m.metric(m.UPSTREAM_LATENCY, env, "p99"),
                        m.metric(m.TIME_TO_FIRST_TOKEN, env, "p50"),
                        m.metric(m.TIME_TO_FIRST_TOKEN, env, "p99"),
                    ],
                ),
                _graph(
                    "ALB time to first byte p50 / p99 (s)",
                    [
                        tg.target_response_time(period=FIVE_MINUTES, statistic="p50"),
                        tg.target_response_time(period=FIVE_MINUTES, statistic="p99"),
                    ],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(value=latency_p99_alarm_seconds, label="p99 alarm")
                    ],
                ),
            ],
            [
                _graph(
                    "Tokens by client",
                    [
                        m.search(m.PROMPT_TOKENS, env, "Sum", m.CLIENT),
                        m.search(m.COMPLETION_TOKENS, env, "Sum", m.CLIENT),
                    ],
                    width=6,
                ),
                _graph("Cost by client (USD)", [m.search(m.COST_USD, env, "Sum", m.CLIENT)], width=6),
                _graph(
                    "Tokens by model",
                    [
                        m.search(m.PROMPT_TOKENS, env, "Sum", m.MODEL),
                        m.search(m.COMPLETION_TOKENS, env, "Sum", m.MODEL),
                    ],
                    width=6,
                ),
                _graph("Cost by model (USD)", [m.search(m.COST_USD, env, "Sum", m.MODEL)], width=6),
            ],
            [
                _graph(
                    "Budget used by client (%)",
                    [m.search(m.BUDGET_USED_PERCENT, env, "Maximum", m.CLIENT)],
                    left_annotations=[cloudwatch.HorizontalAnnotation(value=80, label="alarm")],
                    width=8,
                ),
                # Which provider credential paid: an upstream's own, or one a client brought.
                _graph("Cost by credential (USD)", [m.search(m.COST_USD, env, "Sum", m.CREDENTIAL)], width=8),
                _graph("Errors by kind", [m.search(m.ERRORS, env, "Sum", m.ERROR_KIND)], width=8),
            ],
            [
                # End users' requests, by the first attribute their tokens carry (docs/end-users.md).
                _graph("Requests by client", [m.search(m.REQUESTS, env, "Sum", m.CLIENT)], width=8),
                _graph(
                    "Requests by client and first attribute",
                    [m.search(m.REQUESTS, env, "Sum", m.CLIENT, m.ATTRIBUTE)],
                    width=8,
                ),
                _graph(
                    "Cost by client and first attribute (USD)",
                    [m.search(m.COST_USD, env, "Sum", m.CLIENT, m.ATTRIBUTE)],
                    width=8,
                ),
            ],
            [
                _graph(
                    "Answer cache hit ratio (%)",
                    [
                        cloudwatch.MathExpression(
                            expression="100 * hits / (hits + misses)",
                            using_metrics={
                                "hits": m.metric(m.CACHE_HITS, env, "Sum"),
                                "misses": m.metric(m.CACHE_MISSES, env, "Sum"),
                            },
                            label="hit ratio",
                            period=FIVE_MINUTES,
                        )
                    ],
                ),
                _graph("Saved by the answer cache (USD)", [m.metric(m.SAVED_USD, env, "Sum")]),
            ],
            [
                _graph(
                    "Healthy hosts and running tasks",
                    [
                        tg.healthy_host_count(period=Duration.minutes(1), statistic="Minimum"),
                        tg.unhealthy_host_count(period=Duration.minutes(1), statistic="Maximum"),
                        ecs_metric("ECS/ContainerInsights", "RunningTaskCount", "Minimum"),
                        ecs_metric("ECS/ContainerInsights", "DesiredTaskCount", "Maximum"),
                    ],
                ),
                _graph(
                    "CPU and memory (% of the task size)",
                    [
                        ecs_metric("AWS/ECS", "CPUUtilization", "Average"),
                        ecs_metric("AWS/ECS", "MemoryUtilization", "Average"),
                    ],
                ),
            ],
            [
                _graph(
                    "Shared store: commands and ECPUs",
                    [
                        store("TotalCmdsCount", "Sum"),
                        store("ElastiCacheProcessingUnits", "Sum"),
                        store("ThrottledCmds", "Sum"),
                    ],
                    width=8,
                ),
                _graph(
                    "Shared store: latency (µs)",
                    [
                        store("SuccessfulReadRequestLatency", "p99"),
                        store("SuccessfulWriteRequestLatency", "p99"),
                    ],
                    width=8,
                ),
                _graph(
                    "Shared store: connections, data, auth failures",
                    [
                        store("CurrConnections", "Maximum"),
                        store("AuthenticationFailures", "Sum"),
                    ],
                    right=[store("BytesUsedForCache", "Maximum")],
                    width=8,
                ),
            ],
            [cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(alarms), width=WIDTH, height=4)],
        ]
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", widgets=rows)
        region = Stack.of(self).region
        self.url = (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#dashboards/dashboard/{self.dashboard.dashboard_name}"
        )
