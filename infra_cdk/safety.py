"""The task role's permission to call Amazon Comprehend for the safety checks, only when asked.

A safety policy's `comprehend` check (service/safety/comprehend.py) calls `DetectToxicContent`.
The policies live in a runtime secret (`safety_policies`), so the stack cannot see whether one
uses it: the environment option `safety_comprehend` (context key of the same name) says so.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam

from infra_cdk.nag import acknowledge

ACTION = "comprehend:DetectToxicContent"


def grant_comprehend(role: iam.IRole, enabled: bool) -> iam.PolicyStatement | None:
    """Allow `role` DetectToxicContent when `enabled`; no statement at all otherwise."""
    if not enabled:
        return None
    # DetectToxicContent acts on the text sent, not on a resource: IAM knows no ARN for it.
    statement = iam.PolicyStatement(actions=[ACTION], resources=["*"])
    role.add_to_principal_policy(statement)
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "comprehend:DetectToxicContent has no resource type (it analyses the text in the request), "
        "so IAM accepts only '*' for it; the statement allows that one action and nothing else.",
    )
    return statement
