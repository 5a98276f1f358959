"""The service's secrets, created empty under the deployment's prefix (docs/running.md, "Secrets").

The names come from `service.config.secrets`, the module the running service reads them with, so the
two sides cannot drift apart. An administrator sets the values after the first deploy.
`provider_credentials` adds empty secrets for provider credentials (a Vertex AI service account's
JSON key, a client's own provider key) that the service reads by name, like its own.
With `metrics_key`, one more: the key `GET /metrics` asks for, generated, which the task gets as
AIPROXY_METRICS_KEY when it starts and a Prometheus scraper reads from the secret.
"""

from __future__ import annotations

from typing import TypedDict

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra_cdk.nag import acknowledge, cfn_resource
from service.config.secrets import (
    ANSWER_SIGNING_KEY,
    END_USER_HASH_KEY,
    REDIS_AUTH,
    SECRET_NAMES,
    secret_id,
    secret_prefix,
)

# Values a secret starts with. The client key store must exist for the service to start in test
# and production (it fails closed); `{}` is a store with no clients, so the first deploy comes up
# locked (only GET / answers) until an administrator adds keys, instead of failing and rolling back.
# The safety policies start as `{}` too: no policies (a client's entry naming one stops start-up).
INITIAL_VALUES = {"client_api_keys": "{}", "safety_policies": "{}"}

DESCRIPTIONS = {
    "honeybadger_api_key": "Honeybadger API key (error reports); empty turns reporting off",
    "openai_api_key": "Key of the OpenAI-compatible upstream; empty makes the LLM routes answer 503",
    "client_api_keys": "Client key store as JSON (docs/client-keys.md); required in test and production",
    REDIS_AUTH: "Password of the shared limits store (Valkey); generated, nobody needs to type it",
    "safety_policies": "Safety policies as JSON (docs/safety.md); `{}`: none, no client is checked",
    END_USER_HASH_KEY: "Key of the hash naming end users in records (docs/end-users.md); generated",
    ANSWER_SIGNING_KEY: "Seed of the Ed25519 key signing answers (docs/end-users.md); generated",
}
# Secrets no person issues: the stack generates their values (letters and digits, which every
# client and Valkey's password rules accept).
GENERATED = (REDIS_AUTH, END_USER_HASH_KEY, ANSWER_SIGNING_KEY)
PROVIDER_CREDENTIAL = (
    "Provider credential (an upstream's key or a Google service account's JSON key) the service reads "
    "by name: AIPROXY_UPSTREAMS or the key store's upstream_credentials names it"
)
METRICS_KEY = "metrics_key"


class _SecretOptions(TypedDict):
    """What every secret of the service is created with."""

    secret_name: str
    description: str
    removal_policy: RemovalPolicy
    encryption_key: kms.IKey | None


class ServiceSecrets(Construct):
    """Exposes `secrets` (name -> Secret), `metrics_key` (a Secret, or None) and `prefix`;
    `grant_read` allows reading the prefix."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        environment_type: str,
        environment: str,
        removal_policy: RemovalPolicy,
        encryption_key: kms.IKey | None = None,
        metrics_key: bool = False,
        provider_credentials: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.prefix = secret_prefix(environment_type, environment)
        self.encryption_key = encryption_key
        self.secrets: dict[str, secretsmanager.Secret] = {}
        for name in (*SECRET_NAMES, *provider_credentials):
            options: _SecretOptions = {
                "secret_name": secret_id(environment_type, environment, name),
                "description": DESCRIPTIONS.get(name, PROVIDER_CREDENTIAL),
                "removal_policy": removal_policy,
                "encryption_key": encryption_key,
            }
            if name in GENERATED:
                generate = secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=40)
                secret = secretsmanager.Secret(self, name, generate_secret_string=generate, **options)
            else:
                secret = empty_secret(self, name, initial_value=INITIAL_VALUES.get(name), **options)
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                "Provider and client keys are issued outside AWS and rotated by an administrator "
                "putting a new value; the service reads it again within AIPROXY_SECRETS_TTL.",
            )
            self.secrets[name] = secret
        self.metrics_key: secretsmanager.Secret | None = None
        if metrics_key:
            self.metrics_key = secretsmanager.Secret(
                self,
                METRICS_KEY,
                secret_name=secret_id(environment_type, environment, METRICS_KEY),
                description="Key a Prometheus scraper sends to GET /metrics (AIPROXY_METRICS_KEY); generated",
                generate_secret_string=secretsmanager.SecretStringGenerator(
                    exclude_punctuation=True, password_length=40
                ),
                removal_policy=removal_policy,
                encryption_key=encryption_key,
            )
            acknowledge(
                self.metrics_key,
                "AwsSolutions-SMG4",
                "Rotated by an administrator putting a new value and starting new tasks (the task "
                "reads it at start), then giving the scraper the new value.",
            )

    def grant_read(self, grantee: iam.IGrantable) -> iam.Grant:
        """Allow GetSecretValue on this deployment's prefix only (the service reads by name), and
        decrypting with the secrets' customer-managed key, if any, through Secrets Manager only."""
        stack = Stack.of(self)
        prefix_arn = stack.format_arn(
            service="secretsmanager",
            resource="secret",
            # Secrets Manager appends `-` and six random characters to every secret's ARN.
            resource_name=f"{self.prefix}*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        grant = iam.Grant.add_to_principal(
            grantee=grantee, actions=["secretsmanager:GetSecretValue"], resource_arns=[prefix_arn]
        )
        if self.encryption_key is not None:
            iam.Grant.add_to_principal(
                grantee=grantee,
                actions=["kms:Decrypt"],
                resource_arns=[self.encryption_key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"secretsmanager.{stack.region}.amazonaws.com"}
                },
            )
        if isinstance(grantee, iam.Role):
            acknowledge(
                grantee,
                f"AwsSolutions-IAM5[Resource::{stack.resolve(prefix_arn)}]",
                "The wildcard stands for the random suffix Secrets Manager appends to each ARN and "
                "for the deployment's own secrets, all under its prefix; the service reads only these.",
            )
        return grant


def empty_secret(
    scope: Construct,
    construct_id: str,
    *,
    secret_name: str,
    description: str,
    removal_policy: RemovalPolicy,
    initial_value: str | None = None,
    encryption_key: kms.IKey | None = None,
) -> secretsmanager.Secret:
    """A secret created with no value (or a non-secret `initial_value`), for an administrator to fill in.

    The L2 construct would generate a random value; whoever reads the secret treats one without
    a value as unset, so an empty secret is the honest start.
    """
    secret = secretsmanager.Secret(
        scope,
        construct_id,
        secret_name=secret_name,
        description=description,
        removal_policy=removal_policy,
        encryption_key=encryption_key,
    )
    cfn_resource(secret).add_property_deletion_override("GenerateSecretString")
    if initial_value is not None:
        cfn_resource(secret).add_property_override("SecretString", initial_value)
    return secret
