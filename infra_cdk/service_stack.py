"""One environment of the service: network, ingress and firewall, compute, secrets, the shared
limits store, monitoring and its dashboard, wired up."""

from __future__ import annotations

import math
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.bedrock import bedrock_settings, grant_invoke
from infra_cdk.compute import CONTAINER_PORT, Compute
from infra_cdk.dashboard import ServiceDashboard
from infra_cdk.edge import REGION_HEADER_SETTING, WebFirewall
from infra_cdk.encryption import ALARM_PUBLISHER, StackKey
from infra_cdk.environments import AppConfig, ServiceEnvironment
from infra_cdk.ingress import Ingress
from infra_cdk.monitoring import Monitoring
from infra_cdk.network import Network
from infra_cdk.safety import grant_comprehend
from infra_cdk.secrets import METRICS_KEY, ServiceSecrets
from infra_cdk.store import SharedStore
from service.config.secrets import REDIS_AUTH, secret_id
from service.config.settings import SETTINGS


def setting_default(name: str) -> str:
    """The default of the service's setting `name` (service/config/settings.py), as written there."""
    (setting,) = [s for s in SETTINGS if s.env == name]
    return setting.default


# The ALB closes a connection idle for this long; it must outlast the longest request (an
# assessment waits up to AIPROXY_UPSTREAM_TIMEOUT, 300 s by default, per upstream call) and stay
# below the server's keep-alive (AIPROXY_KEEPALIVE, 620 s) so the ALB never reuses a connection
# the server has just closed. A test checks these three stay in that order.
ALB_IDLE_TIMEOUT = Duration.seconds(600)
# On a scale-in or deployment the ALB first drains a task: it sends no new requests and lets the
# ones in flight finish for up to this long (it ends sooner when none are left). Only then does
# ECS send SIGTERM, so the delay must outlast the longest request: an assessment waiting the
# upstream timeout. The server then gives what is left AIPROXY_GRACEFUL_TIMEOUT to finish, and
# ECS waits STOP_TIMEOUT (longer) before it kills the container. Both derive from the service's
# own setting defaults, so raising them there moves these too.
DRAIN_MARGIN_SECONDS = 10
DEREGISTRATION_DELAY = Duration.seconds(
    math.ceil(float(setting_default("AIPROXY_UPSTREAM_TIMEOUT"))) + DRAIN_MARGIN_SECONDS
)
STOP_TIMEOUT = Duration.seconds(int(setting_default("AIPROXY_GRACEFUL_TIMEOUT")) + 15)
CPU_TARGET_PERCENT = 60
REQUESTS_PER_TASK_PER_MINUTE = 600

# Output names the pipeline reads (the smoke and integration tests need the URL).
URL_OUTPUT = "Url"
LOG_GROUP_OUTPUT = "LogGroupName"
DASHBOARD_OUTPUT = "DashboardUrl"
# The shared limits store's URL (rediss://<user>@<host>:<port>); the password is the secret
# redis_auth under the deployment's prefix.
REDIS_URL_SETTING = "AIPROXY_REDIS_URL"
# A serverless cache speaks the cluster protocol (one endpoint, every slot behind it).
REDIS_CLUSTER_SETTING = "AIPROXY_REDIS_CLUSTER"
# The key GET /metrics asks for, with AppConfig.prometheus_metrics; the stack output names its secret.
METRICS_KEY_SETTING = "AIPROXY_METRICS_KEY"
METRICS_KEY_OUTPUT = "MetricsKeySecretName"


class ServiceStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment: ServiceEnvironment,
        config: AppConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        # The availability zones are configuration: seeding the context value the VPC would
        # otherwise look up keeps synthesis offline.
        zones_key = f"availability-zones:account={self.account}:region={self.region}"
        self.node.set_context(zones_key, list(environment.availability_zones))
        self.service_environment = environment
        # RetainExceptOnCreate: kept when the stack is deleted or a resource replaced, but
        # deleted when the first create rolls back, so a retry does not fail on its names.
        removal_policy = (
            RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE if environment.retain_data else RemovalPolicy.DESTROY
        )
        # The key lives as long as the secrets and logs it encrypts.
        self.key = (
            StackKey(
                self,
                "Key",
                description=f"AI Proxy {environment.dns_name}: secrets, logs and alarm topic",
                topic_publishers=[ALARM_PUBLISHER],
                removal_policy=removal_policy,
            ).key
            if environment.customer_managed_key
            else None
        )

        self.network = Network(
            self,
            "Network",
            availability_zones=environment.availability_zones,
            nat_gateways=environment.nat_gateways,
            existing_vpc=environment.existing_vpc,
            removal_policy=removal_policy,
            encryption_key=self.key,
        )
        vpc = self.network.vpc
        self.ingress = Ingress(
            self,
            "Ingress",
            vpc=vpc,
            dns_name=environment.dns_name,
            base_domain=environment.base_domain,
            base_hosted_zone_id=environment.hosted_zone_id,
            idle_timeout=ALB_IDLE_TIMEOUT,
            access_log_retention=Duration.days(environment.log_retention_days),
            deletion_protection=environment.deletion_protection,
        )
        self.firewall = WebFirewall(
            self,
            "Firewall",
            load_balancer=self.ingress.load_balancer,
            rate_limit=environment.waf_rate_limit,
            metric_prefix=environment.stack_name,
            region_countries=config.region_countries,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            log_retention=_retention(environment.log_retention_days),
            removal_policy=removal_policy,
            alarm_emails=environment.alarm_emails,
            encryption_key=self.key,
        )
        self.secrets = ServiceSecrets(
            self,
            "Secrets",
            environment_type=environment.environment_type,
            environment=environment.dns_name,
            removal_policy=removal_policy,
            encryption_key=self.key,
            metrics_key=environment.prometheus_metrics,
            provider_credentials=config.provider_credentials,
        )
        self.compute = Compute(
            self,
            "Compute",
            vpc=vpc,
            size=environment.size,
            environment={
                "ENVIRONMENT": environment.dns_name,
                "ENVIRONMENT_TYPE": environment.environment_type,
                "LOG_FORMAT": "json",
                # The caller's country, as the WAF inserts it (infra_cdk/edge.py).
                "AIPROXY_REGION_HEADER": REGION_HEADER_SETTING,
                **bedrock_settings(config.bedrock_models),
            },
            log_group=self.monitoring.log_group,
            stop_timeout=STOP_TIMEOUT,
        )

        # Grants: the task reads its own secrets at run time (cached, so rotation takes effect
        # without a restart); nothing else may.
        self.secrets.grant_read(self.compute.task_definition.task_role)
        # Amazon Bedrock: the configured models and inference profiles only (infra_cdk/bedrock.py).
        grant_invoke(self.compute.task_definition.task_role, config.bedrock_models)
        # Amazon Comprehend, for a safety policy's `comprehend` check: only when the option says so.
        grant_comprehend(self.compute.task_definition.task_role, config.safety_comprehend)

        self.store = SharedStore(
            self,
            "Store",
            vpc=vpc,
            clients=self.compute.service,
            password=self.secrets.secrets[REDIS_AUTH],
            name=environment.stack_name,
        )
        self.compute.container.add_environment(REDIS_URL_SETTING, self.store.url)
        self.compute.container.add_environment(REDIS_CLUSTER_SETTING, "true")
        if self.secrets.metrics_key is not None:
            # Given at start by ECS (its execution role reads the secret): the service reads
            # its settings once, and a scraper reads the same secret.
            self.compute.container.add_secret(
                METRICS_KEY_SETTING, ecs.Secret.from_secrets_manager(self.secrets.metrics_key)
            )
            CfnOutput(
                self,
                METRICS_KEY_OUTPUT,
                value=secret_id(environment.environment_type, environment.dns_name, METRICS_KEY),
                description="Secret holding the key a Prometheus scraper sends to GET /metrics",
            )

        self.target_group = self.ingress.https_listener.add_targets(
            "Service",
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.compute.service],
            deregistration_delay=DEREGISTRATION_DELAY,
        )
        self.target_group.configure_health_check(
            path="/",
            healthy_http_codes="200",
            interval=Duration.seconds(15),
            timeout=Duration.seconds(5),
            healthy_threshold_count=2,
            unhealthy_threshold_count=3,
        )

        scaling = self.compute.service.auto_scale_task_count(
            min_capacity=environment.size.min_tasks, max_capacity=environment.size.max_tasks
        )
        scaling.scale_on_cpu_utilization("Cpu", target_utilization_percent=CPU_TARGET_PERCENT)
        scaling.scale_on_request_count(
            "Requests", requests_per_target=REQUESTS_PER_TASK_PER_MINUTE, target_group=self.target_group
        )

        self.monitoring.watch(
            load_balancer=self.ingress.load_balancer,
            target_group=self.target_group,
            service=self.compute.service,
            environment=environment.dns_name,
            min_tasks=environment.size.min_tasks,
            latency_p99=Duration.seconds(environment.latency_p99_alarm_seconds),
        )
        self.dashboard = ServiceDashboard(
            self,
            "Dashboard",
            environment=environment.dns_name,
            load_balancer=self.ingress.load_balancer,
            target_group=self.target_group,
            service=self.compute.service,
            store_name=self.store.cache.serverless_cache_name,
            alarms=list(self.monitoring.alarms.values()),
            latency_p99_alarm_seconds=environment.latency_p99_alarm_seconds,
        )

        self.url_output = CfnOutput(self, URL_OUTPUT, value=environment.url, description="The service's URL")
        self.log_group_output = CfnOutput(
            self,
            LOG_GROUP_OUTPUT,
            value=self.monitoring.log_group.log_group_name,
            description="CloudWatch log group of the service's tasks",
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn, description="Alarm topic")
        CfnOutput(
            self,
            DASHBOARD_OUTPUT,
            value=self.dashboard.url,
            description="The environment's CloudWatch dashboard",
        )


# The retention periods environments/table.py uses, by days (CloudWatch allows only fixed periods).
_RETENTION = {
    7: logs.RetentionDays.ONE_WEEK,
    30: logs.RetentionDays.ONE_MONTH,
    90: logs.RetentionDays.THREE_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
}


def _retention(days: int) -> logs.RetentionDays:
    if days not in _RETENTION:
        raise ValueError(f"log retention of {days} days is not one of {sorted(_RETENTION)}")
    return _RETENTION[days]
