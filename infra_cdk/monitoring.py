"""Logs and alarms: the service's log group, and alarms to an SNS topic (e-mailed to the
configured addresses). What each alarm means and what to do: docs/operations.md."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra_cdk import service_metrics

# The load balancer's own 5xx (no healthy target, a target that reset the connection or timed
# out) in five minutes.
ELB_5XX_THRESHOLD = 5
# Share of requests the tasks answered with 5xx in five minutes, once there are enough requests
# for a share to mean something.
TARGET_5XX_RATE_PERCENT = 5
TARGET_5XX_MIN_REQUESTS = 20
BUDGET_ALARM_PERCENT = 80
# Container Insights' service metrics (the cluster has Container Insights on).
CONTAINER_INSIGHTS = "ECS/ContainerInsights"
ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)


class Monitoring(Construct):
    """Exposes `log_group`, `topic` and, after `watch`, `alarms` (name -> alarm)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        alarm_emails: Sequence[str],
        encryption_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=log_retention,
            removal_policy=removal_policy,
            encryption_key=encryption_key,
        )
        self.topic = sns.Topic(self, "Alarms", enforce_ssl=True, master_key=encryption_key)
        for email in alarm_emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))
        self.alarms: dict[str, cloudwatch.Alarm] = {}

    def watch(
        self,
        *,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group: elbv2.ApplicationTargetGroup,
        service: ecs.FargateService,
        environment: str,
        min_tasks: int,
        latency_p99: Duration,
    ) -> None:
        """Alarm (and notify the topic) on what a user or operator of `environment` would notice."""
        target_metrics = target_group.metrics
        self._alarm(
            "NoHealthyHost",
            "No task passes the load balancer's health check: the service is down",
            target_metrics.healthy_host_count(period=ONE_MINUTE, statistic="Minimum"),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=3,
            # A crash-looping service registers no target, and the metric may then be absent.
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        self._alarm(
            "UnhealthyHosts",
            "A task failed the load balancer's health check",
            target_metrics.unhealthy_host_count(period=ONE_MINUTE, statistic="Maximum"),
            threshold=0,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
        )
        running_tasks = cloudwatch.Metric(
            namespace=CONTAINER_INSIGHTS,
            metric_name="RunningTaskCount",
            dimensions_map={
                "ClusterName": service.cluster.cluster_name,
                "ServiceName": service.service_name,
            },
            statistic="Minimum",
            period=ONE_MINUTE,
        )
        self._alarm(
            "TasksBelowMinimum",
            f"Fewer tasks run than the environment's minimum ({min_tasks}) for five minutes",
            running_tasks,
            threshold=min_tasks,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=5,
            # Container Insights reports a running service every minute; silence means none runs.
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        self._alarm(
            "LoadBalancer5xx",
            "The load balancer itself answered 5xx (no healthy task, or a task reset or timed out)",
            load_balancer.metrics.http_code_elb(
                elbv2.HttpCodeElb.ELB_5XX_COUNT, period=FIVE_MINUTES, statistic="Sum"
            ),
            threshold=ELB_5XX_THRESHOLD,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        target_5xx_rate = cloudwatch.MathExpression(
            # 5xx counts are published only when there are some: FILL makes them 0.
            expression=f"IF(requests >= {TARGET_5XX_MIN_REQUESTS}, 100 * FILL(errors, 0) / requests, 0)",
            using_metrics={
                "errors": target_metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES, statistic="Sum"
                ),
                "requests": target_metrics.request_count(period=FIVE_MINUTES, statistic="Sum"),
            },
            label="Target 5xx (% of requests)",
            period=FIVE_MINUTES,
        )
        self._alarm(
            "Target5xxRate",
            f"Over {TARGET_5XX_RATE_PERCENT} % of requests got a 5xx from the service",
            target_5xx_rate,
            threshold=TARGET_5XX_RATE_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        )
        self._alarm(
            "LatencyP99",
            f"p99 time to the answer's first byte above {latency_p99.to_seconds():g} s for 15 minutes",
            target_metrics.target_response_time(period=FIVE_MINUTES, statistic="p99"),
            threshold=latency_p99.to_seconds(),
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
        )
        # Published only for clients with a budget: with none, the alarm has no data and stays OK.
        self._alarm(
            "BudgetAt80Percent",
            f"A client has used {BUDGET_ALARM_PERCENT} % of a daily or monthly budget",
            service_metrics.metric(service_metrics.BUDGET_USED_PERCENT, environment, "Maximum"),
            threshold=BUDGET_ALARM_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

    def _alarm(
        self,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_description=f"{description}. What to do: docs/operations.md, alarm {name}.",
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            treat_missing_data=missing,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[name] = alarm
        return alarm
