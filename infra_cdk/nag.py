"""Acknowledging a cdk-nag finding on one construct, with the reason it does not apply."""

from __future__ import annotations

import json
import re
from typing import Any, cast

import jsii
from aws_cdk import Acknowledgment, CfnResource, IAspect, Stack, Validations
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge `rule` (e.g. `AwsSolutions-ELB2`, or one finding `AwsSolutions-IAM5[...]`)
    for `construct` and its children only; never for a whole stack."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule, reason=reason))


# --- wildcard grants that CDK itself generates ----------------------------------------------------
#
# CDK Pipelines and CodeBuild create roles whose policies name log groups, report groups and the
# artifact bucket with wildcards. cdk-nag reports each wildcard (AwsSolutions-IAM5) as its own
# finding. `AcknowledgeGeneratedGrants` acknowledges, policy by policy, only the findings that
# match a known, explained pattern; anything else still fails synthesis for a person to look at.

ARTIFACTS_REASON = (
    "CDK's grant on the pipeline's own artifact bucket: the wildcards are object keys and the "
    "read/write action families (GetObject*, List*, ...) on that one bucket."
)
ARTIFACT_KEY_REASON = (
    "CDK's grant on the pipeline's own artifact key (cross-account deployments): the wildcards "
    "are the KMS action families (GenerateDataKey*, ReEncrypt*) on that one key."
)
OWN_LOGS_REASON = (
    "The CodeBuild project's own log group and test report groups, whose stream and report "
    "names are made when a build runs."
)
ASSET_PROJECT_REASON = (
    "CDK Pipelines gives its asset-publishing projects one role made before the projects are "
    "named, so it may write to any CodeBuild log group or report group of this account and region."
)
BOOTSTRAP_ROLES_REASON = (
    "May assume only roles tagged as CDK bootstrap roles (deploy, file and image publishing), by "
    "the statement's condition, to update the pipeline stack."
)
BUILD_KEY_REASON = (
    "Build output goes only to the pipeline's artifact bucket (encrypted, private, TLS only, "
    "with a customer-managed key when another account deploys); a key for CodeBuild itself "
    "would restrict no reader further."
)
READ_ONLY_REASON = (
    "Read-only actions that CDK Pipelines' generated roles allow on any resource: describe "
    "stacks (the ones it updates), list buckets' objects, and follow the state of builds."
)
# Actions a generated statement may allow on "*" and still be acknowledged. Starting and
# stopping builds is not among them: pipeline_stack.ScopeAssetBuilds narrows CDK Pipelines'
# grant of those to the asset projects, and any other such grant on "*" is reported.
READ_ONLY_ACTIONS = {
    "cloudformation:DescribeStacks",
    "s3:ListBucket",
    "codebuild:BatchGetBuilds",
}


def _nag_text(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag writes it in a finding id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"<{arg}>"
        if key == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if key == "Fn::Join":
            separator: str = arg[0]
            return separator.join(_nag_text(part) for part in arg[1])
    return json.dumps(value, sort_keys=True)


def as_list(value: Any) -> list[Any]:
    """A policy statement's Action or Resource as a list (CloudFormation allows a single value)."""
    return value if isinstance(value, list) else [value]


def generated_grant_findings(
    document: dict[str, Any], bucket_logical_id: str | None, key_logical_id: str | None = None
) -> dict[str, str]:
    """IAM5 finding id -> reason, for the wildcards of `document` that match a known pattern."""
    account_region = r"arn:[^:]+:(logs|codebuild):[^:]+:\d{12}:"
    own_logs = re.compile(account_region + r"(log-group:/aws/codebuild/<\w+>(:\*)?|report-group/<\w+>-\*)$")
    any_logs = re.compile(account_region + r"(log-group:/aws/codebuild/\*|report-group/\*)$")
    bootstrap = re.compile(r"arn:\*:iam::\d{12}:role/\*$")
    bucket = f"<{bucket_logical_id}.Arn>" if bucket_logical_id else None
    key = f"<{key_logical_id}.Arn>" if key_logical_id else None
    findings: dict[str, str] = {}
    for statement in document.get("Statement", []):
        actions = [str(a) for a in as_list(statement.get("Action", []))]
        resources = [_nag_text(r) for r in as_list(statement.get("Resource", []))]
        on_bucket = bool(bucket) and all(r in (bucket, f"{bucket}/*") for r in resources)
        on_key = bool(key) and resources == [key]
        for action in actions:
            if "*" in action and on_bucket and action.startswith("s3:"):
                findings[f"AwsSolutions-IAM5[Action::{action}]"] = ARTIFACTS_REASON
            elif "*" in action and on_key and action.startswith("kms:"):
                findings[f"AwsSolutions-IAM5[Action::{action}]"] = ARTIFACT_KEY_REASON
        for resource in resources:
            if "*" not in resource:
                continue
            finding = f"AwsSolutions-IAM5[Resource::{resource}]"
            if on_bucket:
                findings[finding] = ARTIFACTS_REASON
            elif own_logs.match(resource):
                findings[finding] = OWN_LOGS_REASON
            elif any_logs.match(resource):
                findings[finding] = ASSET_PROJECT_REASON
            elif bootstrap.match(resource) and "aws-cdk:bootstrap-role" in json.dumps(
                statement.get("Condition")
            ):
                findings[finding] = BOOTSTRAP_ROLES_REASON
            elif resource == "*" and set(actions) <= READ_ONLY_ACTIONS:
                findings.setdefault(finding, READ_ONLY_REASON)
    # A `*` finding is one per policy: acknowledge it only if every unscoped statement qualifies.
    for statement in document.get("Statement", []):
        if (
            "*" in as_list(statement.get("Resource", []))
            and not set(as_list(statement.get("Action", []))) <= READ_ONLY_ACTIONS
        ):
            findings.pop("AwsSolutions-IAM5[Resource::*]", None)
    return findings


@jsii.implements(IAspect)
class AcknowledgeGeneratedGrants:
    """Aspect: on each IAM policy below the construct it is added to, acknowledge the wildcard
    findings of CDK-generated grants (see `generated_grant_findings`), with their reasons."""

    def __init__(
        self, artifact_bucket: s3.IBucket | None = None, artifact_key: kms.IKey | None = None
    ) -> None:
        self._bucket = artifact_bucket
        self._key = artifact_key

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, codebuild.CfnProject) and self._bucket is not None:
            acknowledge(node, "AwsSolutions-CB4", BUILD_KEY_REASON)
        if not isinstance(node, iam.CfnPolicy):
            return
        stack = Stack.of(node)
        document = stack.resolve(node.policy_document)
        bucket_id = stack.get_logical_id(cfn_resource(self._bucket)) if self._bucket else None
        key_id = stack.get_logical_id(cfn_resource(self._key)) if self._key else None
        findings = generated_grant_findings(document, stack.resolve(bucket_id), stack.resolve(key_id))
        for finding, reason in findings.items():
            acknowledge(node, finding, reason)


def cfn_resource(construct: IConstruct) -> CfnResource:
    """The CloudFormation resource an L2 construct wraps (its default child, always a CfnResource)."""
    return cast(CfnResource, construct.node.default_child)
