"""Checks over every synthesized template: cdk-nag, cfn-lint, snapshots; and the existing-VPC variant."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template
from cfnlint.api import ManualArgs, lint_file

from infra_cdk import snapshots
from infra_cdk.app import add_checks, add_service_stacks
from infra_cdk.environments import AppConfig, Deployment, ExistingVpc
from infra_cdk.nag import ARTIFACT_KEY_REASON, READ_ONLY_ACTIONS, READ_ONLY_REASON, generated_grant_findings

# cfn-lint 1.58 reports its informational I1022 ("Prefer using Fn::Sub over Fn::Join"), which it
# otherwise skips for CDK templates, as an E3703 error inside CodePipeline action configurations
# (the RoleArn CDK Pipelines writes with Fn::Join). A Join is valid there; other E3703s are not.
CFN_LINT_MISREPORTED = ("E3703", "Prefer using Fn::Sub over Fn::Join with an empty delimiter")
# cfn-lint warnings accepted on purpose: CDK adds DependsOn entries that a Ref already implies
# (W3005); the availability zones are literal because they are configuration, so that synthesis
# needs no lookup (W3010).
ACCEPTED_CFN_LINT_WARNINGS = {"W3005", "W3010"}


def test_every_template_passes_cfn_lint(template_paths):
    assert len(template_paths) >= 3
    problems = []
    for stack, path in template_paths.items():
        for match in lint_file(path, config=ManualArgs(regions=[AppConfig().region])):
            if (match.rule.id, match.message) == CFN_LINT_MISREPORTED:
                continue
            if match.rule.id.startswith("E") or match.rule.id not in ACCEPTED_CFN_LINT_WARNINGS:
                problems.append(f"{stack}: {match}")
    assert not problems, "\n".join(problems)


def acknowledgments(synth_dir: Path) -> dict[str, dict[str, str]]:
    """construct path -> {rule: reason} of every acknowledged cdk-nag finding in the assembly."""
    found: dict[str, dict[str, str]] = {}
    for metadata_file in synth_dir.rglob("*.metadata.json"):
        for path, entries in json.loads(metadata_file.read_text()).items():
            for entry in entries:
                if entry["type"] == "aws:cdk:acknowledged-rules":
                    rules = {k: v for k, v in entry["data"].items() if "AwsSolutions-" in k}
                    if rules:
                        found.setdefault(path, {}).update(rules)
    return found


def test_cdk_nag_passes_with_each_acknowledgment_scoped_and_explained(synth_dir, template_paths):
    # The session's synthesis ran the AwsSolutions checks; an unacknowledged error would have
    # failed it. Here: every acknowledgment sits on a resource, not a stack, and says why.
    report = json.loads((synth_dir / "validation-report.json").read_text())
    assert all(plugin["conclusion"] == "success" for plugin in report["pluginReports"])
    found = acknowledgments(synth_dir)
    assert found
    stacks = {f"/{name}" for name in template_paths} | {f"/{name.split('/')[-1]}" for name in template_paths}
    for path, rules in found.items():
        assert path not in stacks, f"stack-wide acknowledgment at {path}: {rules}"
        for rule, reason in rules.items():
            assert re.search(r"AwsSolutions-[A-Z]+\d+", rule)
            assert len(reason.split()) >= 8, f"{path} {rule}: the reason is too thin: {reason!r}"


def test_cdk_nag_fails_synthesis_on_an_unacknowledged_finding(tmp_path):
    # The same checks the app adds catch a bucket without TLS enforcement or access logs.
    app = cdk.App(outdir=str(tmp_path), context=snapshots.cdk_json_context())
    stack = cdk.Stack(app, "Careless")
    s3.Bucket(stack, "Bucket")
    add_checks(app)
    with pytest.raises(RuntimeError, match=r"ValidationFailed"):
        app.synth()


def test_snapshots_are_up_to_date(synth_dir):
    lines = snapshots.differences(snapshots.rendered_snapshots(synth_dir), snapshots.committed_snapshots())
    assert not lines, (
        "The stacks differ from infra_cdk/snapshots/. Review with `make diff`, accept with "
        "`make snapshot`:\n" + "".join(lines[:80])
    )


def test_snapshots_mask_asset_hashes(synth_dir, template_paths):
    raw = template_paths["aiproxy-test"].read_text()
    image_hashes = set(re.findall(r"container-assets-[^:]+:([0-9a-f]{64})", raw))
    assert image_hashes
    rendered = snapshots.render(json.loads(raw))
    assert not any(h in rendered for h in image_hashes)
    assert (
        f"container-assets-{AppConfig().account}-{AppConfig().region}:{snapshots.ASSET_HASH_MASK}" in rendered
    )


def test_snapshot_diff_is_readable_and_names_the_change():
    before = {"aiproxy.json": '{\n  "Cpu": "512",\n  "Memory": "1024"\n}\n'}
    after = {"aiproxy.json": '{\n  "Cpu": "1024",\n  "Memory": "1024"\n}\n', "new.json": "{}\n"}
    text = "".join(snapshots.differences(after, before))
    assert '-  "Cpu": "512",' in text and '+  "Cpu": "1024",' in text
    assert "--- /dev/null" in text and "+++ synth/new.json" in text


@pytest.fixture(scope="module")
def existing_vpc_template(tmp_path_factory) -> Template:
    config = AppConfig(
        existing_vpc=ExistingVpc(
            vpc_id="vpc-0123456789abcdef0",
            availability_zones=("us-east-1a", "us-east-1b"),
            public_subnet_ids=("subnet-0aaaaaaaaaaaaaa01", "subnet-0aaaaaaaaaaaaaa02"),
            private_subnet_ids=("subnet-0bbbbbbbbbbbbbb01", "subnet-0bbbbbbbbbbbbbb02"),
        )
    )
    outdir = tmp_path_factory.mktemp("existing-vpc")
    app = cdk.App(outdir=str(outdir), context=snapshots.cdk_json_context(), analytics_reporting=False)
    (stack,) = add_service_stacks(
        app, Deployment(environment_type="development", branch="shared-vpc", config=config)
    )
    add_checks(app)
    app.synth()
    return Template.from_json(json.loads((outdir / f"{stack.artifact_id}.template.json").read_text()))


def test_existing_vpc_is_used_by_attributes_without_creating_one(existing_vpc_template):
    template = existing_vpc_template
    template.resource_count_is("AWS::EC2::VPC", 0)
    template.resource_count_is("AWS::EC2::Subnet", 0)
    template.resource_count_is("AWS::EC2::NatGateway", 0)
    service = next(iter(template.find_resources("AWS::ECS::Service").values()))
    assert service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == [
        "subnet-0bbbbbbbbbbbbbb01",
        "subnet-0bbbbbbbbbbbbbb02",
    ]
    balancer = next(iter(template.find_resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()))
    assert balancer["Properties"]["Subnets"] == ["subnet-0aaaaaaaaaaaaaa01", "subnet-0aaaaaaaaaaaaaa02"]
    template.has_resource_properties("AWS::EC2::SecurityGroup", {"VpcId": "vpc-0123456789abcdef0"})


def test_customer_managed_keys_are_off_by_default(existing_vpc_template):
    # AppConfig's default (cdk.json's example turns them on): AWS-managed encryption, no key to pay for.
    template = existing_vpc_template
    template.resource_count_is("AWS::KMS::Key", 0)
    for resource_type, prop in (
        ("AWS::SecretsManager::Secret", "KmsKeyId"),
        ("AWS::Logs::LogGroup", "KmsKeyId"),
        ("AWS::SNS::Topic", "KmsMasterKeyId"),
    ):
        found = template.find_resources(resource_type)
        assert found and not any(prop in r.get("Properties", {}) for r in found.values()), resource_type


def test_only_known_generated_wildcards_are_acknowledged():
    bucket = "Artifacts82DD59A1"
    document = {
        "Statement": [
            {
                "Action": ["s3:GetObject*", "s3:List*"],
                "Resource": [
                    {"Fn::GetAtt": [bucket, "Arn"]},
                    {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/*"]]},
                ],
            },
            {
                "Action": ["logs:CreateLogStream"],
                "Resource": {
                    "Fn::Join": [
                        "",
                        [
                            "arn:aws:logs:us-east-1:111111111111:log-group:/aws/codebuild/",
                            {"Ref": "P1"},
                            ":*",
                        ],
                    ]
                },
            },
            # Not CDK's doing: a wildcard on another bucket and a broad action on everything.
            {"Action": "s3:GetObject*", "Resource": "arn:aws:s3:::someone-elses-bucket/*"},
            {"Action": "secretsmanager:GetSecretValue", "Resource": "*"},
        ]
    }
    findings = generated_grant_findings(document, bucket)
    assert set(findings) == {
        "AwsSolutions-IAM5[Action::s3:GetObject*]",
        "AwsSolutions-IAM5[Action::s3:List*]",
        f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/*]",
        "AwsSolutions-IAM5[Resource::arn:aws:logs:us-east-1:111111111111:log-group:/aws/codebuild/<P1>:*]",
    }
    assert "AwsSolutions-IAM5[Resource::arn:aws:s3:::someone-elses-bucket/*]" not in findings
    assert "AwsSolutions-IAM5[Resource::*]" not in findings


def test_kms_wildcards_are_acknowledged_on_the_artifact_key_only():
    # Cross-account pipelines encrypt artifacts with their own key; CDK grants its action families.
    key_actions = ["kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"]
    on_artifact_key = {
        "Statement": [{"Action": key_actions, "Resource": {"Fn::GetAtt": ["ArtifactsKey1", "Arn"]}}]
    }
    assert generated_grant_findings(on_artifact_key, None, "ArtifactsKey1") == {
        "AwsSolutions-IAM5[Action::kms:GenerateDataKey*]": ARTIFACT_KEY_REASON,
        "AwsSolutions-IAM5[Action::kms:ReEncrypt*]": ARTIFACT_KEY_REASON,
    }
    on_other_key = {"Statement": [{"Action": key_actions, "Resource": {"Fn::GetAtt": ["OtherKey", "Arn"]}}]}
    assert generated_grant_findings(on_other_key, None, "ArtifactsKey1") == {}
    anywhere = {"Statement": [{"Action": key_actions, "Resource": "*"}]}
    assert generated_grant_findings(anywhere, None, "ArtifactsKey1") == {}


def test_starting_builds_anywhere_is_not_acknowledged_as_read_only():
    # Starting and stopping builds is neither read-only nor unscopable (pipeline_stack narrows
    # CDK Pipelines' grant of it): on "*" it stays a finding for a person to look at.
    start_builds_anywhere = {
        "Statement": [
            {
                "Action": ["codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"],
                "Resource": "*",
            },
            {"Action": "cloudformation:DescribeStacks", "Resource": "*"},
        ]
    }
    assert generated_grant_findings(start_builds_anywhere, None) == {}
    read_only = {
        "Statement": [{"Action": ["cloudformation:DescribeStacks", "s3:ListBucket"], "Resource": "*"}]
    }
    assert generated_grant_findings(read_only, None) == {"AwsSolutions-IAM5[Resource::*]": READ_ONLY_REASON}


def test_read_only_acknowledgment_sits_only_on_read_only_policies(synth_dir, template_paths):
    # In the real pipelines the read-only `*` acknowledgment is on the self-mutation roles only,
    # and no policy of a pipeline stack allows more than read-only actions on `*`.
    acknowledged = {
        path
        for path, rules in acknowledgments(synth_dir).items()
        # Metadata keys read e.g. `Annotation::AwsSolutions-IAM5[Resource::*]`.
        if any(
            k.endswith("AwsSolutions-IAM5[Resource::*]") and v == READ_ONLY_REASON for k, v in rules.items()
        )
    }
    assert acknowledged and all("/Pipeline/UpdatePipeline/SelfMutation/" in path for path in acknowledged)
    pipeline_stacks = {
        stack: path for stack, path in template_paths.items() if stack.startswith("aiproxy-cicd")
    }
    for stack, path in pipeline_stacks.items():
        if "/" in stack:  # a stage's service stack (its ecr:GetAuthorizationToken has its own reason)
            continue
        for resource in json.loads(path.read_text())["Resources"].values():
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Resource"] == "*":
                    actions = (
                        statement["Action"]
                        if isinstance(statement["Action"], list)
                        else [statement["Action"]]
                    )
                    assert set(actions) <= READ_ONLY_ACTIONS, (stack, statement)
