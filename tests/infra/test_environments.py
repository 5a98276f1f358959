"""Naming rules and configuration of the CDK app (docs/deploying.md); plain Python, no synthesis."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra_cdk.environments import (
    ENVIRONMENT_TYPE_SETTINGS,
    AppConfig,
    ConfigurationError,
    ExistingVpc,
    config_from_context,
    deployment_from_context,
    pipeline_stack_name,
    service_environments,
    validate_branch,
)

ROOT = Path(__file__).resolve().parents[2]


def names(environment_type: str, branch: str, config: AppConfig | None = None) -> list[tuple[str, str, str]]:
    return [
        (e.environment_type, e.stack_name, e.dns_name)
        for e in service_environments(config or AppConfig(), environment_type, branch)
    ]


def test_production_main_deploys_test_then_production():
    assert names("production", "main") == [
        ("test", "aiproxy-test", "aiproxy-test.example.org"),
        ("production", "aiproxy", "aiproxy.example.org"),
    ]
    assert pipeline_stack_name("production", "main") == "aiproxy-cicd"


def test_production_other_branch_gets_branch_suffixed_names():
    assert names("production", "otherbranch") == [
        ("test", "aiproxy-test-otherbranch", "aiproxy-test-otherbranch.example.org"),
        ("production", "aiproxy-otherbranch", "aiproxy-otherbranch.example.org"),
    ]
    assert pipeline_stack_name("production", "otherbranch") == "aiproxy-cicd-otherbranch"


def test_development_deploys_one_environment():
    assert names("development", "mybranch") == [
        ("development", "aiproxy-dev-mybranch", "aiproxy-dev-mybranch.example.org")
    ]
    assert pipeline_stack_name("development", "mybranch") == "aiproxy-cicd-dev-mybranch"


def test_base_domain_comes_from_configuration():
    config = AppConfig(base_domain="code.org")
    assert names("development", "x1", config)[0][2] == "aiproxy-dev-x1.code.org"


@pytest.mark.parametrize(
    ("branch", "message"),
    [
        ("feature/login", "contains '/'"),
        ("test", "would collide"),
        ("test-login", "would collide"),
        ("dev-login", "would collide"),
        ("cicd", "would collide"),
        ("Feature", "lowercase letters"),
        ("my_branch", "lowercase letters"),
        ("-x", "lowercase letters"),
        ("x" * 60, "longer than 50"),
        ("", "branch is empty"),
    ],
)
def test_unusable_branch_names_are_refused_with_a_clear_message(branch, message):
    with pytest.raises(ConfigurationError, match=message):
        validate_branch(branch)


@pytest.mark.parametrize("branch", ["main", "mybranch", "feature-1", "testing", "devops", "a"])
def test_usable_branch_names(branch):
    assert validate_branch(branch) == branch


def test_unknown_environment_type_is_refused():
    with pytest.raises(ConfigurationError, match="environment_type 'staging' is not valid"):
        service_environments(AppConfig(), "staging", "main")


def test_no_two_deployments_share_a_stack_name():
    # Branches that look alike must still get distinct stacks (and DNS names) across types.
    stacks: dict[str, tuple[str, str]] = {}
    for environment_type in ("production", "development"):
        for branch in ("main", "x", "test1", "prod", "dev1", "aiproxy"):
            deployment_stacks = [
                e.stack_name for e in service_environments(AppConfig(), environment_type, branch)
            ]
            deployment_stacks.append(pipeline_stack_name(environment_type, branch))
            for stack in deployment_stacks:
                assert stack not in stacks, f"{stack} of {(environment_type, branch)} and {stacks.get(stack)}"
                stacks[stack] = (environment_type, branch)


def context(**values):
    return values.get


def test_context_overrides_the_configuration_defaults():
    deployment = deployment_from_context(
        context(
            environment_type="development",
            branch="mybranch",
            account="222222222222",
            region="eu-west-1",
            base_domain="code.org",
            hosted_zone_id="Z999",
            task_cpu="1024",
            task_memory_mib="2048",
            max_tasks="4",
        )
    )
    config = deployment.config
    assert (config.account, config.region, config.base_domain, config.hosted_zone_id) == (
        "222222222222",
        "eu-west-1",
        "code.org",
        "Z999",
    )
    assert config.zones == ("eu-west-1a", "eu-west-1b")
    (environment,) = deployment.environments
    assert environment.dns_name == "aiproxy-dev-mybranch.code.org"
    assert (environment.size.cpu, environment.size.memory_mib, environment.size.max_tasks) == (1024, 2048, 4)
    assert environment.size.min_tasks == 1  # the development default is kept


def test_defaults_are_mains_production_pipeline():
    deployment = deployment_from_context(context())
    assert [e.stack_name for e in deployment.environments] == ["aiproxy-test", "aiproxy"]


def test_existing_vpc_by_attributes_from_context():
    config = config_from_context(
        context(
            vpc_id="vpc-0abc",
            availability_zones="eu-west-1a, eu-west-1b",
            vpc_public_subnet_ids="subnet-p1,subnet-p2",
            vpc_private_subnet_ids="subnet-q1,subnet-q2",
        )
    )
    assert config.existing_vpc == ExistingVpc(
        vpc_id="vpc-0abc",
        availability_zones=("eu-west-1a", "eu-west-1b"),
        public_subnet_ids=("subnet-p1", "subnet-p2"),
        private_subnet_ids=("subnet-q1", "subnet-q2"),
    )


def test_existing_vpc_needs_one_subnet_per_zone():
    with pytest.raises(ConfigurationError, match="vpc_private_subnet_ids must list one subnet per"):
        config_from_context(
            context(
                vpc_id="vpc-0abc",
                availability_zones="a,b",
                vpc_public_subnet_ids="p1,p2",
                vpc_private_subnet_ids="q1",
            )
        )


def test_bad_sizes_are_refused():
    with pytest.raises(ConfigurationError, match="task_cpu='big' is not a whole number"):
        config_from_context(context(task_cpu="big"))
    with pytest.raises(ConfigurationError, match="min_tasks 5 is above max_tasks 2"):
        deployment_from_context(context(environment_type="development", branch="b", min_tasks="5"))


def test_nat_gateways_per_environment_type():
    # Each NAT gateway holds an Elastic IP (5 per region by default): only production gets one per AZ.
    assert {t: s.nat_gateways for t, s in ENVIRONMENT_TYPE_SETTINGS.items()} == {
        "development": 1,
        "test": 1,
        "production": 2,
    }
    test, production = service_environments(AppConfig(), "production", "main")
    (development,) = service_environments(AppConfig(), "development", "b1")
    assert (test.nat_gateways, production.nat_gateways, development.nat_gateways) == (1, 2, 1)


def test_production_refuses_fewer_than_two_tasks():
    with pytest.raises(ConfigurationError, match="min_tasks=1 is too few for production"):
        deployment_from_context(context(environment_type="production", branch="main", min_tasks="1"))
    # The same override is fine for a development environment.
    (environment,) = deployment_from_context(
        context(environment_type="development", branch="b1", min_tasks="1")
    ).environments
    assert environment.size.min_tasks == 1


@pytest.mark.parametrize(
    ("cpu", "memory", "message"),
    [
        ("256", "4096", "with 256 CPU units use 512, 1024, 2048 MiB"),
        ("256", "1536", "task_memory_mib=1536 does not go with task_cpu=256"),
        ("512", "512", "with 512 CPU units use 1024 to 4096 in steps of 1024 MiB"),
        ("1024", "2500", "with 1024 CPU units use 2048 to 8192 in steps of 1024 MiB"),
        ("2048", "2048", "with 2048 CPU units use 4096 to 16384 in steps of 1024 MiB"),
        ("4096", "32768", "with 4096 CPU units use 8192 to 30720 in steps of 1024 MiB"),
        ("8192", "17408", "with 8192 CPU units use 16384 to 61440 in steps of 4096 MiB"),
        ("16384", "36864", "with 16384 CPU units use 32768 to 122880 in steps of 8192 MiB"),
        ("300", "1024", "task_cpu=300 is not a Fargate CPU size; use one of 256, 512, 1024"),
    ],
)
def test_task_size_must_be_a_fargate_size(cpu, memory, message):
    with pytest.raises(ConfigurationError, match=message):
        deployment_from_context(
            context(environment_type="development", branch="b1", task_cpu=cpu, task_memory_mib=memory)
        )


@pytest.mark.parametrize(
    ("cpu", "memory"),
    [
        ("256", "512"),
        ("256", "2048"),
        ("512", "3072"),
        ("2048", "16384"),
        ("8192", "20480"),
        ("16384", "122880"),
    ],
)
def test_fargate_sizes_are_accepted(cpu, memory):
    (environment,) = deployment_from_context(
        context(environment_type="development", branch="b1", task_cpu=cpu, task_memory_mib=memory)
    ).environments
    assert (environment.size.cpu, environment.size.memory_mib) == (int(cpu), int(memory))


def test_cdk_app_refuses_a_bad_branch_with_one_line():
    result = subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "CDK_CONTEXT_JSON": '{"branch": "feature/x"}'},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "aiproxy CDK app: branch 'feature/x' contains '/'" in result.stderr
    assert "Traceback" not in result.stderr


def test_deployment_context_rebuilds_the_same_deployment():
    # The pipeline synthesizes with these arguments: its update must not lose configuration.
    deployment = deployment_from_context(
        context(
            environment_type="production",
            branch="otherbranch",
            account="222222222222",
            base_domain="code.org",
            vpc_id="vpc-1",
            availability_zones="us-east-1a,us-east-1c",
            vpc_public_subnet_ids="subnet-1,subnet-2",
            vpc_private_subnet_ids="subnet-3,subnet-4",
            min_tasks="2",
            max_tasks="5",
            bedrock_models="amazon.nova-lite-v1:0",
            alarm_emails="ops@example.org",
            customer_managed_keys="true",
            prometheus_metrics="true",
            safety_comprehend="true",
            production_account="333333333333",
            production_hosted_zone_id="Z0PROD",
            production_manual_approval="false",
            waf_rate_limit="2500",
            latency_p99_alarm_seconds="45",
        )
    )
    assert deployment_from_context(deployment.context().get) == deployment
    assert deployment.config.safety_comprehend
    arguments = deployment.context_arguments()
    assert arguments.startswith(
        "-c environment_type=production -c branch=otherbranch -c account=222222222222"
    )
    assert "-c min_tasks=2 -c max_tasks=5" in arguments
    # Defaults are left out, so a plain pipeline's command stays short.
    plain = deployment_from_context(context(environment_type="development", branch="b1"))
    assert plain.context_arguments() == "-c environment_type=development -c branch=b1"


def test_operations_settings_per_environment_type():
    test, production = service_environments(AppConfig(), "production", "main")
    (development,) = service_environments(AppConfig(), "development", "b1")
    # Only production's load balancer refuses deletion and only production waits for an approval.
    assert [e.deletion_protection for e in (test, production, development)] == [False, True, False]
    assert [e.manual_approval for e in (test, production, development)] == [False, True, False]
    assert production.waf_rate_limit > test.waf_rate_limit
    assert production.latency_p99_alarm_seconds < test.latency_p99_alarm_seconds


def test_operations_settings_from_context():
    deployment = deployment_from_context(
        context(
            alarm_emails="ops@example.org, oncall@example.org",
            customer_managed_keys="true",
            prometheus_metrics="true",
            production_manual_approval="false",
            waf_rate_limit="5000",
            latency_p99_alarm_seconds="30",
        )
    )
    test, production = deployment.environments
    assert production.alarm_emails == test.alarm_emails == ("ops@example.org", "oncall@example.org")
    assert production.customer_managed_key and test.customer_managed_key
    assert production.prometheus_metrics and test.prometheus_metrics
    assert not production.manual_approval
    assert (production.waf_rate_limit, production.latency_p99_alarm_seconds) == (5000, 30)
    # Defaults: no e-mails, AWS-managed encryption, approval before production.
    (plain,) = service_environments(AppConfig(), "development", "b1")
    assert (plain.alarm_emails, plain.customer_managed_key, plain.prometheus_metrics) == ((), False, False)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"alarm_emails": "ops@example"}, "'ops@example' is not an e-mail address"),
        ({"customer_managed_keys": "maybe"}, "customer_managed_keys='maybe' is not true or false"),
        ({"prometheus_metrics": "on"}, "prometheus_metrics='on' is not true or false"),
        ({"waf_rate_limit": "0"}, "waf_rate_limit='0' must be at least 1"),
        ({"production_account": "2222"}, "production_account='2222' is not a 12-digit AWS account id"),
        ({"production_account": "222222222222"}, "needs production_hosted_zone_id"),
        (
            {"production_region": "eu-west-1"},
            "production_region=eu-west-1 differs from region=us-east-1",
        ),
    ],
)
def test_bad_operations_settings_are_refused(values, message):
    with pytest.raises(ConfigurationError, match=message):
        deployment_from_context(context(**values))


def test_production_in_another_account_gets_its_own_zone_and_vpc():
    config = config_from_context(
        context(
            production_account="222222222222",
            production_hosted_zone_id="Z0PROD",
            production_base_domain="prod.example.org",
            vpc_id="vpc-1",
            availability_zones="us-east-1a,us-east-1b",
            vpc_public_subnet_ids="subnet-1,subnet-2",
            vpc_private_subnet_ids="subnet-3,subnet-4",
        )
    )
    test, production = service_environments(config, "production", "main")
    assert (test.account, test.hosted_zone_id, test.dns_name) == (
        "111111111111",
        config.hosted_zone_id,
        "aiproxy-test.example.org",
    )
    assert test.existing_vpc is not None
    assert (production.account, production.region) == ("222222222222", "us-east-1")
    assert (production.hosted_zone_id, production.dns_name) == ("Z0PROD", "aiproxy.prod.example.org")
    assert production.existing_vpc is None  # that VPC is in the pipeline's account


def test_pipeline_passes_only_what_cdk_json_does_not_say():
    # cdk.json's configuration comes with the checkout (and a change to it reaches the pipeline);
    # what was given with -c when the pipeline was deployed is kept with -c.
    from infra_cdk.environments import cdk_json_context

    file_context = cdk_json_context()
    assert file_context["production_account"] == "222222222222"
    same = deployment_from_context(context(**file_context), file_context)
    assert same.context_arguments() == "-c environment_type=production -c branch=main"
    overridden = deployment_from_context(
        context(**{**file_context, "alarm_emails": "other@example.org", "waf_rate_limit": "50"}), file_context
    )
    assert overridden.context() == {
        "environment_type": "production",
        "branch": "main",
        "alarm_emails": "other@example.org",
        "waf_rate_limit": "50",
    }
    # Those arguments on top of cdk.json rebuild the same deployment.
    rebuilt = deployment_from_context(context(**{**file_context, **overridden.context()}), file_context)
    assert rebuilt == overridden
