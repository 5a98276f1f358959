"""Logs and alarms: the service's log group, and alarms on its target group to an SNS topic."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from constructs import Construct

# More target 5xx responses than this in five minutes raise the alarm.
TARGET_5XX_THRESHOLD = 5


class Monitoring(Construct):
    """Exposes `log_group`, `topic` and, after `watch`, `target_5xx_alarm` and `unhealthy_alarm`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.topic = sns.Topic(self, "Alarms", enforce_ssl=True)

    def watch(self, target_group: elbv2.ApplicationTargetGroup) -> None:
        """Alarm (and notify the topic) on 5xx answers from the tasks and on unhealthy tasks."""
        self.target_5xx_alarm = cloudwatch.Alarm(
            self,
            "Target5xx",
            alarm_description="The service answered with 5xx more often than usual",
            metric=target_group.metrics.http_code_target(
                elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=Duration.minutes(5), statistic="Sum"
            ),
            threshold=TARGET_5XX_THRESHOLD,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.unhealthy_alarm = cloudwatch.Alarm(
            self,
            "UnhealthyHosts",
            alarm_description="A task failed the load balancer's health check",
            metric=target_group.metrics.unhealthy_host_count(period=Duration.minutes(1), statistic="Maximum"),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        for alarm in (self.target_5xx_alarm, self.unhealthy_alarm):
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
