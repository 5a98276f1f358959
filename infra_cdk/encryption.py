"""The optional customer-managed KMS key of a stack (AppConfig.customer_managed_keys).

One key per stack encrypts its secrets, log groups and SNS topics. Secrets Manager uses it on
behalf of whoever reads a secret (grants name the key); CloudWatch Logs and the services that
publish to an encrypted topic act as themselves, so the key policy must name them.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

# Services that publish to this project's topics: alarms (service stacks) and CodeStar
# notifications (pipelines).
ALARM_PUBLISHER = "cloudwatch.amazonaws.com"
NOTIFICATIONS_PUBLISHER = "codestar-notifications.amazonaws.com"


class StackKey(Construct):
    """Exposes `key` (rotated yearly)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        description: str,
        topic_publishers: Sequence[str],
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.key = kms.Key(
            self, "Key", description=description, enable_key_rotation=True, removal_policy=removal_policy
        )
        # CloudWatch Logs encrypts with the key itself, for this account's log groups only.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        # Without this an encrypted topic silently drops what these services publish.
        for publisher in topic_publishers:
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal(publisher)],
                    actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                    resources=["*"],
                )
            )
