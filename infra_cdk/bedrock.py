"""The task role's permission to call Amazon Bedrock: the configured models, nothing else.

A configured id is one of:

- a foundation model id (`amazon.nova-lite-v1:0`): that model in the stack's region;
- a cross-region inference profile id (`us.anthropic.claude-sonnet-4-5-20250929-v1:0`, a
  geography prefix and a model id): the profile in the stack's region, and the foundation model
  in every region, since the profile routes each request to one of several regions (a `global.`
  profile to any commercial region);
- an ARN (`arn:aws:bedrock:...`): that resource; for a system inference profile ARN also its
  foundation model in every region. An application inference profile hides its model: list the
  model as well.

Plain chats need `bedrock:InvokeModel`, streamed ones `bedrock:InvokeModelWithResponseStream`.
"""

from __future__ import annotations

from collections.abc import Iterable

from aws_cdk import ArnFormat, Stack, Token
from aws_cdk import aws_iam as iam

from infra_cdk.nag import acknowledge

ACTIONS = ("bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream")
# Geography prefixes of the system-defined cross-region inference profiles.
PROFILE_PREFIXES = ("us", "us-gov", "eu", "apac", "ca", "jp", "au", "global")


def bedrock_settings(model_ids: Iterable[str]) -> dict[str, str]:
    """The container's setting that lists the models in GET /v1/models (none when unset)."""
    listed = ",".join(m.strip() for m in model_ids if m.strip())
    return {"AIPROXY_BEDROCK_MODELS": listed} if listed else {}


def profile_model(model_id: str) -> str | None:
    """The foundation model id of a cross-region profile id (`us.x.y` -> `x.y`), else None."""
    prefix, _, rest = model_id.partition(".")
    return rest if prefix in PROFILE_PREFIXES and "." in rest else None


def invoke_resources(stack: Stack, model_ids: Iterable[str]) -> list[str]:
    """The ARNs the task role may invoke for the configured `model_ids`, without duplicates."""
    resources: list[str] = []

    def foundation_model(model: str, region: str | None = None) -> str:
        return stack.format_arn(
            service="bedrock",
            region=region if region is not None else stack.region,
            account="",
            resource="foundation-model",
            resource_name=model,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    for model_id in model_ids:
        model_id = model_id.strip().removeprefix("bedrock/")
        if not model_id:
            continue
        if model_id.startswith("arn:"):
            found = [model_id]
            kind, _, name = model_id.split(":", 5)[-1].partition("/")
            if kind == "inference-profile" and (model := profile_model(name)):
                found.append(foundation_model(model, "*"))
        elif model := profile_model(model_id):
            profile = stack.format_arn(
                service="bedrock",
                resource="inference-profile",
                resource_name=model_id,
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
            found = [profile, foundation_model(model, "*")]
        else:
            found = [foundation_model(model_id)]
        resources += [arn for arn in found if arn not in resources]
    return resources


def _as_nag_renders(stack: Stack, arn: str) -> str:
    """`arn` as cdk-nag spells it in a finding: an unresolved partition is `<AWS::Partition>`."""
    if Token.is_unresolved(stack.partition):
        return arn.replace(stack.partition, "<AWS::Partition>")
    return arn


def grant_invoke(role: iam.IRole, model_ids: Iterable[str]) -> iam.PolicyStatement | None:
    """Allow `role` to invoke the configured models; no statement at all when there are none."""
    stack = Stack.of(role)
    resources = invoke_resources(stack, model_ids)
    if not resources:
        return None
    statement = iam.PolicyStatement(actions=list(ACTIONS), resources=resources)
    role.add_to_principal_policy(statement)
    for arn in resources:
        if ":*:" in arn:
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::{_as_nag_renders(stack, arn)}]",
                "A cross-region inference profile sends each request to its foundation model in "
                "one of several regions it picks, so that one named model is allowed in any region.",
            )
    return statement
