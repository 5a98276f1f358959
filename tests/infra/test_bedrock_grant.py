"""The task role may invoke exactly the configured Bedrock models and inference profiles (issue 9),
and Comprehend's DetectToxicContent when `safety_comprehend` asks for it (issue 28; without it the
task role has no such statement: tests/infra/test_service_stack.py lists all it has)."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks
from cfnlint.api import ManualArgs, lint_file

from infra_cdk.bedrock import invoke_resources
from infra_cdk.environments import AppConfig, service_environments
from infra_cdk.service_stack import ServiceStack
from infra_cdk.snapshots import cdk_json_context

PROFILE = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
MODEL = "amazon.nova-lite-v1:0"
CONFIG = AppConfig(bedrock_models=(PROFILE, MODEL), safety_comprehend=True)
ACTIONS = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]


@pytest.fixture(scope="module")
def outdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bedrock")


@pytest.fixture(scope="module")
def template(outdir) -> Template:
    """One development environment with two Bedrock models and Comprehend, synthesized with the
    cdk-nag checks."""
    app = cdk.App(outdir=str(outdir), context=cdk_json_context(), analytics_reporting=False)
    [environment] = service_environments(CONFIG, "development", "bedrock-example")
    stack = ServiceStack(
        app,
        environment.stack_name,
        environment=environment,
        config=CONFIG,
        env=cdk.Environment(account=CONFIG.account, region=CONFIG.region),
    )
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    app.synth()  # raises when a cdk-nag finding is not acknowledged
    return Template.from_stack(stack)


def task_role_statements(template: Template) -> list[dict]:
    [task] = template.find_resources("AWS::ECS::TaskDefinition").values()
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]
    policies = template.find_resources("AWS::IAM::Policy", {"Properties": {"Roles": [{"Ref": role}]}})
    return [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]


def test_task_role_may_invoke_only_the_configured_models_and_profiles(template):
    [statement] = [s for s in task_role_statements(template) if "bedrock" in str(s["Action"])]
    region, account = CONFIG.region, CONFIG.account
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == ACTIONS
    assert sorted(statement["Resource"]) == sorted(
        [
            f"arn:aws:bedrock:{region}:{account}:inference-profile/{PROFILE}",
            # the profile routes to this model in several regions
            "arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
            f"arn:aws:bedrock:{region}::foundation-model/{MODEL}",
        ]
    )
    assert "Condition" not in statement


def test_task_role_may_detect_toxic_content_and_nothing_else_of_comprehend(template):
    [statement] = [s for s in task_role_statements(template) if "comprehend" in str(s["Action"])]
    # The action has no resource type: `*` is the only resource IAM takes for it.
    assert statement == {"Action": "comprehend:DetectToxicContent", "Effect": "Allow", "Resource": "*"}


def test_template_passes_cfn_lint(template, outdir):
    [path] = outdir.glob("*.template.json")
    # Errors only: tests/infra/test_checks.py holds the example stacks to the warnings as well.
    problems = [m for m in lint_file(path, config=ManualArgs(regions=[CONFIG.region])) if m.rule.id[0] == "E"]
    assert not problems, "\n".join(map(str, problems))


def test_container_lists_the_configured_models(template):
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Environment": Match.array_with(
                            [{"Name": "AIPROXY_BEDROCK_MODELS", "Value": f"{PROFILE},{MODEL}"}]
                        )
                    }
                )
            ]
        },
    )


def test_arns_and_global_profiles():
    app = cdk.App(context=cdk_json_context())
    stack = cdk.Stack(app, "Arns", env=cdk.Environment(account="222222222222", region="eu-west-1"))
    arn = "arn:aws:bedrock:eu-west-1:222222222222:inference-profile/eu.anthropic.claude-3-haiku-20240307-v1:0"
    app_profile = "arn:aws:bedrock:eu-west-1:222222222222:application-inference-profile/abc123"
    configured = [f"bedrock/{arn}", app_profile, "global.anthropic.claude-sonnet-4-5-20250929-v1:0", " ", arn]
    resources = [stack.resolve(resource) for resource in invoke_resources(stack, configured)]
    assert resources == [
        arn,
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
        app_profile,
        "arn:aws:bedrock:eu-west-1:222222222222:inference-profile/global.anthropic.claude-sonnet-4-5-20250929-v1:0",
        # `*` also matches the empty region of a global profile's model ARN
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-sonnet-4-5-20250929-v1:0",
    ]
