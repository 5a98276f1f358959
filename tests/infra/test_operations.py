"""Alarms, their e-mails, the dashboard and the optional customer-managed key (issue Operations)."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from infra_cdk import snapshots
from infra_cdk.environments import ENVIRONMENT_TYPE_SETTINGS, config_from_context
from tests.support.templates import only

CONFIG = config_from_context(snapshots.cdk_json_context().get)
DEV = "aiproxy-dev-example-branch"
# stack -> (environment type, ENVIRONMENT of the task)
ENVIRONMENTS = {
    "aiproxy-test": ("test", "aiproxy-test.example.org"),
    "aiproxy": ("production", "aiproxy.example.org"),
    DEV: ("development", "aiproxy-dev-example-branch.example.org"),
}
PIPELINES = ("aiproxy-cicd", "aiproxy-cicd-dev-example-branch")


@pytest.fixture(scope="module")
def templates(template_json) -> dict[str, Template]:
    return {stack: Template.from_json(template_json(stack)) for stack in (*ENVIRONMENTS, *PIPELINES)}


# What each environment alarms on (the 5xx rate's first input names it).
ALARM_METRICS = {
    "HealthyHostCount",
    "UnHealthyHostCount",
    "RunningTaskCount",
    "HTTPCode_ELB_5XX_Count",
    "HTTPCode_Target_5XX_Count",
    "TargetResponseTime",
    "BudgetUsedPercent",
}


def alarm_metric(props: dict) -> str:
    """The metric an alarm watches: its own, or the first input of its math expression."""
    if "MetricName" in props:
        return props["MetricName"]
    return next(m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m)


def alarm(template: Template, metric_name: str) -> dict:
    """The one alarm on `metric_name` (a plain metric, or one inside a math expression)."""
    found = [
        a["Properties"]
        for a in template.find_resources("AWS::CloudWatch::Alarm").values()
        if alarm_metric(a["Properties"]) == metric_name
    ]
    assert len(found) == 1, f"expected one alarm on {metric_name}, found {len(found)}"
    return found[0]


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_every_alarm_notifies_the_topic_which_mails_the_configured_addresses(templates, stack):
    template = templates[stack]
    topic_id, _ = only(template, "AWS::SNS::Topic")
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    assert len(alarms) == len(ALARM_METRICS)
    assert {alarm_metric(a["Properties"]) for a in alarms.values()} == ALARM_METRICS
    for found in alarms.values():
        assert found["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert found["Properties"]["OKActions"] == [{"Ref": topic_id}]
        assert "docs/operations.md" in found["Properties"]["AlarmDescription"]
    assert CONFIG.alarm_emails == ("aiproxy-alarms@example.org",)
    for email in CONFIG.alarm_emails:
        template.has_resource_properties(
            "AWS::SNS::Subscription",
            {"Protocol": "email", "Endpoint": email, "TopicArn": {"Ref": topic_id}},
        )


def test_no_healthy_host_alarms_when_the_metric_is_missing(templates):
    # A crash-looping service registers no target: silence must raise the alarm too.
    template = templates["aiproxy"]
    group_id, _ = only(template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        Match.object_like(
            {
                "Namespace": "AWS/ApplicationELB",
                "MetricName": "HealthyHostCount",
                "Dimensions": Match.array_with(
                    [{"Name": "TargetGroup", "Value": {"Fn::GetAtt": [group_id, "TargetGroupFullName"]}}]
                ),
                "Statistic": "Minimum",
                "Period": 60,
                "ComparisonOperator": "LessThanThreshold",
                "Threshold": 1,
                "EvaluationPeriods": 3,
                "TreatMissingData": "breaching",
            }
        ),
    )


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_running_tasks_below_the_environments_minimum(templates, stack):
    template = templates[stack]
    minimum = ENVIRONMENT_TYPE_SETTINGS[ENVIRONMENTS[stack][0]].size.min_tasks
    cluster_id, cluster = only(template, "AWS::ECS::Cluster")
    # RunningTaskCount comes from Container Insights.
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]
    service_id, _ = only(template, "AWS::ECS::Service")
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        Match.object_like(
            {
                "Namespace": "ECS/ContainerInsights",
                "MetricName": "RunningTaskCount",
                "Dimensions": [
                    {"Name": "ClusterName", "Value": {"Ref": cluster_id}},
                    {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service_id, "Name"]}},
                ],
                "Statistic": "Minimum",
                "ComparisonOperator": "LessThanThreshold",
                "Threshold": minimum,
                "EvaluationPeriods": 5,
                "TreatMissingData": "breaching",
            }
        ),
    )


def test_load_balancer_5xx(templates):
    template = templates["aiproxy"]
    balancer_id, _ = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        Match.object_like(
            {
                "Namespace": "AWS/ApplicationELB",
                "MetricName": "HTTPCode_ELB_5XX_Count",
                "Dimensions": [
                    {"Name": "LoadBalancer", "Value": {"Fn::GetAtt": [balancer_id, "LoadBalancerFullName"]}}
                ],
                "Statistic": "Sum",
                "Period": 300,
                "ComparisonOperator": "GreaterThanThreshold",
                "Threshold": 5,
                "TreatMissingData": "notBreaching",
            }
        ),
    )


def test_target_5xx_rate_is_a_share_of_requests(templates):
    found = alarm(templates["aiproxy"], "HTTPCode_Target_5XX_Count")
    assert (found["ComparisonOperator"], found["Threshold"], found["TreatMissingData"]) == (
        "GreaterThanThreshold",
        5,
        "notBreaching",
    )
    (expression,) = [m for m in found["Metrics"] if "Expression" in m]
    assert expression["ReturnData"] is True
    assert expression["Expression"] == "IF(requests >= 20, 100 * FILL(errors, 0) / requests, 0)"
    inputs = {m["Id"]: m["MetricStat"] for m in found["Metrics"] if "MetricStat" in m}
    assert {i: (s["Metric"]["MetricName"], s["Stat"], s["Period"]) for i, s in inputs.items()} == {
        "errors": ("HTTPCode_Target_5XX_Count", "Sum", 300),
        "requests": ("RequestCount", "Sum", 300),
    }
    assert all(m.get("ReturnData") is False for m in found["Metrics"] if "MetricStat" in m)


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_p99_latency_threshold_comes_from_the_environment_type(templates, stack):
    found = alarm(templates[stack], "TargetResponseTime")
    expected = ENVIRONMENT_TYPE_SETTINGS[ENVIRONMENTS[stack][0]].latency_p99_alarm_seconds
    assert found["ExtendedStatistic"] == "p99"
    assert (found["Threshold"], found["ComparisonOperator"]) == (expected, "GreaterThanThreshold")
    assert (found["EvaluationPeriods"], found["Period"], found["TreatMissingData"]) == (
        3,
        300,
        "notBreaching",
    )
    assert ENVIRONMENT_TYPE_SETTINGS["production"].latency_p99_alarm_seconds == 60


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_budget_alarm_on_the_services_metric_of_this_environment(templates, stack):
    # Absent when no client has a budget: no data is then not a breach.
    templates[stack].has_resource_properties(
        "AWS::CloudWatch::Alarm",
        Match.object_like(
            {
                "Namespace": "AIProxy",
                "MetricName": "BudgetUsedPercent",
                "Dimensions": [{"Name": "Environment", "Value": ENVIRONMENTS[stack][1]}],
                "Statistic": "Maximum",
                "ComparisonOperator": "GreaterThanOrEqualToThreshold",
                "Threshold": 80,
                "TreatMissingData": "notBreaching",
            }
        ),
    )


def dashboard_body(template: Template) -> dict:
    """The dashboard's JSON with the template's references reduced to their logical ids."""
    _, dashboard = only(template, "AWS::CloudWatch::Dashboard")
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else json.dumps(p).replace('"', "'") for p in parts)
    return json.loads(text)


@pytest.mark.parametrize("stack", ENVIRONMENTS)
def test_dashboard_shows_traffic_latency_usage_capacity_and_the_store(templates, stack):
    template = templates[stack]
    dashboard_id, _ = only(template, "AWS::CloudWatch::Dashboard")
    environment = ENVIRONMENTS[stack][1]
    widgets = {w["properties"].get("title"): w for w in dashboard_body(template)["widgets"]}
    assert {
        "Requests and errors",
        "Latency p50 / p99 (ms)",
        "ALB time to first byte p50 / p99 (s)",
        "Tokens by client",
        "Cost by client (USD)",
        "Tokens by model",
        "Cost by model (USD)",
        "Budget used by client (%)",
        "Healthy hosts and running tasks",
        "CPU and memory (% of the task size)",
        "Shared store: commands and ECPUs",
        "Alarms",
    } <= set(widgets)

    def metrics(title: str) -> list:
        return widgets[title]["properties"]["metrics"]

    def names(title: str) -> set[str]:
        return {m[1] for m in metrics(title) if len(m) > 1 and isinstance(m[1], str)}

    assert {"Requests", "Errors", "RequestCount", "HTTPCode_ELB_5XX_Count"} <= names("Requests and errors")
    latency = json.dumps(metrics("Latency p50 / p99 (ms)"))
    assert all(f'"{n}"' in latency for n in ("Latency", "TimeToFirstToken", "p50", "p99"))
    # Usage by client and model: SEARCH over the service's dimension sets of this environment.
    cost = metrics("Cost by client (USD)")[0][0]["expression"]
    assert cost == (
        f'SEARCH(\'{{AIProxy,Environment,Client}} MetricName="CostUSD" Environment="{environment}"\', '
        "'Sum', 300)"
    )
    assert "{AIProxy,Environment,Model}" in json.dumps(metrics("Tokens by model"))
    # End users' spend and requests by client and the first attribute of their tokens.
    for title, name in (
        ("Requests by client and first attribute", "Requests"),
        ("Cost by client and first attribute (USD)", "CostUSD"),
    ):
        expression = metrics(title)[0][0]["expression"]
        assert "{AIProxy,Environment,Client,Attribute}" in expression and f'MetricName="{name}"' in expression
    assert "{AIProxy,Environment,Client}" in json.dumps(metrics("Requests by client"))
    assert {"HealthyHostCount", "RunningTaskCount"} <= names("Healthy hosts and running tasks")
    assert {"CPUUtilization", "MemoryUtilization"} <= names("CPU and memory (% of the task size)")
    _, cache = only(template, "AWS::ElastiCache::ServerlessCache")
    store = metrics("Shared store: commands and ECPUs")
    assert {m[1] for m in store} >= {"ElastiCacheProcessingUnits", "ThrottledCmds"}
    assert all(m[:3] == ["AWS/ElastiCache", m[1], "clusterId"] for m in store)
    assert all(m[3] == cache["Properties"]["ServerlessCacheName"] for m in store)
    # The answer cache: hits over hits and misses, from the service's [Environment] figures.
    ratio = metrics("Answer cache hit ratio (%)")
    assert ratio[0][0]["expression"] == "100 * hits / (hits + misses)"
    assert {(m[1], m[4]["id"]) for m in ratio[1:]} == {("CacheHits", "hits"), ("CacheMisses", "misses")}
    assert all(m[3] == environment for m in ratio[1:])
    assert names("Saved by the answer cache (USD)") == {"SavedUSD"}
    assert len(widgets["Alarms"]["properties"]["alarms"]) == len(ALARM_METRICS)
    # The stack's output links to it.
    output = template.find_outputs("DashboardUrl")["DashboardUrl"]["Value"]["Fn::Join"][1]
    assert output[0].startswith(f"https://{CONFIG.region}.console.aws.amazon.com/cloudwatch/home")
    assert output[1] == {"Ref": dashboard_id}


@pytest.mark.parametrize("stack", (*ENVIRONMENTS, *PIPELINES))
def test_customer_managed_key_encrypts_secrets_logs_and_topics(templates, stack):
    # cdk.json turns the option on for the examples (tests/infra/test_checks.py: off by default).
    assert CONFIG.customer_managed_keys
    template = templates[stack]
    keys = template.find_resources(
        "AWS::KMS::Key", {"Properties": {"Description": Match.string_like_regexp(r"^AI Proxy")}}
    )
    assert len(keys) == 1
    ((key_id, key),) = keys.items()
    assert key["Properties"]["EnableKeyRotation"] is True
    key_arn = {"Fn::GetAtt": [key_id, "Arn"]}
    for resource_type, prop in (
        ("AWS::SecretsManager::Secret", "KmsKeyId"),
        ("AWS::Logs::LogGroup", "KmsKeyId"),
        ("AWS::SNS::Topic", "KmsMasterKeyId"),
    ):
        found = template.find_resources(resource_type)
        assert found, resource_type
        assert all(r["Properties"][prop] == key_arn for r in found.values()), resource_type
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    # CloudWatch Logs may use it for this account's log groups; the topic's publisher may publish.
    (logs_statement,) = [s for s in statements if s.get("Sid") == "CloudWatchLogsOfThisAccount"]
    assert logs_statement["Principal"] == {"Service": f"logs.{CONFIG.region}.amazonaws.com"}
    publisher = "codestar-notifications.amazonaws.com" if stack in PIPELINES else "cloudwatch.amazonaws.com"
    assert {
        "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
        "Effect": "Allow",
        "Principal": {"Service": publisher},
        "Resource": "*",
    } in statements
