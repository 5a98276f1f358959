"""`prometheus_metrics`: a generated key opens `GET /metrics` in a deployed environment."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from cfnlint.api import ManualArgs, lint_file

from infra_cdk import snapshots
from infra_cdk.app import add_checks, add_service_stacks
from infra_cdk.environments import AppConfig, Deployment, config_from_context
from infra_cdk.service_stack import METRICS_KEY_OUTPUT, METRICS_KEY_SETTING
from service.config.settings import load_settings
from tests.support.templates import only

CONFIG = AppConfig(prometheus_metrics=True, customer_managed_keys=True)
SECRET_NAME = "development/aiproxy-dev-scraped.example.org/metrics_key"


@pytest.fixture(scope="module")
def outdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("metrics-key")


@pytest.fixture(scope="module")
def template(outdir) -> Template:
    """One development environment with the option on, synthesized with cdk-nag's checks."""
    app = cdk.App(outdir=str(outdir), context=snapshots.cdk_json_context(), analytics_reporting=False)
    deployment = Deployment(environment_type="development", branch="scraped", config=CONFIG)
    (stack,) = add_service_stacks(app, deployment)
    add_checks(app)
    app.synth()  # raises when a cdk-nag finding is not acknowledged
    return Template.from_json(json.loads((outdir / f"{stack.artifact_id}.template.json").read_text()))


def test_the_task_starts_with_a_generated_key_in_its_own_secret(template):
    secret_id, secret = only(template, "AWS::SecretsManager::Secret", {"Name": SECRET_NAME})
    generated = secret["Properties"]["GenerateSecretString"]
    # Letters and digits, long enough for the setting (service.config.settings asks for 16 at least).
    assert generated == {"ExcludePunctuation": True, "PasswordLength": 40}
    key_id, _ = only(template, "AWS::KMS::Key")
    assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    _, task = only(template, "AWS::ECS::TaskDefinition")
    [container] = task["Properties"]["ContainerDefinitions"]
    assert container["Secrets"] == [{"Name": METRICS_KEY_SETTING, "ValueFrom": {"Ref": secret_id}}]
    # The scraper's operator finds the secret by the stack's output.
    assert template.find_outputs(METRICS_KEY_OUTPUT)[METRICS_KEY_OUTPUT]["Value"] == SECRET_NAME


def test_only_the_execution_role_reads_it_at_start(template):
    secret_id, _ = only(template, "AWS::SecretsManager::Secret", {"Name": SECRET_NAME})
    _, task = only(template, "AWS::ECS::TaskDefinition")
    execution_role = task["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
    attached = {"Properties": {"Roles": [{"Ref": execution_role}]}}
    policies = template.find_resources("AWS::IAM::Policy", attached)
    statements = [s for p in policies.values() for s in p["Properties"]["PolicyDocument"]["Statement"]]
    reads = [s for s in statements if "secretsmanager:GetSecretValue" in s["Action"]]
    assert [s["Resource"] for s in reads] == [{"Ref": secret_id}]  # this secret, no other
    # The secret's customer-managed key lets it decrypt, through Secrets Manager only.
    _, key = only(template, "AWS::KMS::Key")
    [decrypt] = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Principal") == {"AWS": {"Fn::GetAtt": [execution_role, "Arn"]}}
    ]
    assert decrypt["Action"] == "kms:Decrypt"
    via = f"secretsmanager.{CONFIG.region}.amazonaws.com"
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": via}}


def test_template_passes_cfn_lint(template, outdir):
    [path] = outdir.glob("*.template.json")
    problems = [m for m in lint_file(path, config=ManualArgs(regions=[CONFIG.region])) if m.rule.id[0] == "E"]
    assert not problems, "\n".join(map(str, problems))


def test_a_key_of_that_shape_is_one_the_service_accepts():
    # What the generator makes: 40 letters and digits.
    key = "A1b2C3d4E5f6G7h8I9j0" * 2
    assert load_settings(environ={METRICS_KEY_SETTING: key}, config_file=None).metrics_key == key


def test_the_option_is_off_unless_configured(template_json):
    # AppConfig's default and cdk.json's example: no key, so `/metrics` answers 404 and the
    # workers keep no Prometheus figures.
    assert not AppConfig().prometheus_metrics
    assert not config_from_context(snapshots.cdk_json_context().get).prometheus_metrics
    for stack in ("aiproxy-test", "aiproxy", "aiproxy-dev-example-branch"):
        template = Template.from_json(template_json(stack))
        secrets = template.find_resources("AWS::SecretsManager::Secret").values()
        assert not [s for s in secrets if s["Properties"]["Name"].endswith("/metrics_key")]
        assert METRICS_KEY_OUTPUT not in template.find_outputs("*")
        _, task = only(template, "AWS::ECS::TaskDefinition")
        assert "Secrets" not in task["Properties"]["ContainerDefinitions"][0]
