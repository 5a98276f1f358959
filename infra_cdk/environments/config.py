"""The typed values the CDK app is built from, and the error when they cannot be deployed.

`AppConfig` is the account-wide configuration (code defaults, overridden by context: see
context.py), `EnvironmentTypeSettings` what an environment type decides (its values: table.py),
and `ServiceEnvironment` one deployed copy of the service, both combined (deployment.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


class ConfigurationError(ValueError):
    """The app's configuration (context) cannot be deployed; the message says what to change."""


@dataclass(kw_only=True, frozen=True)
class TaskSize:
    """Fargate task size and how many tasks autoscaling may run."""

    cpu: int  # CPU units: 256 = 0.25 vCPU
    memory_mib: int
    min_tasks: int
    max_tasks: int


@dataclass(kw_only=True, frozen=True)
class ExistingVpc:
    """A VPC the stack uses instead of creating one, given by attributes (no lookup at synth)."""

    vpc_id: str
    availability_zones: tuple[str, ...]
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]


@dataclass(kw_only=True, frozen=True)
class EnvironmentTypeSettings:
    """What differs between development, test and production environments."""

    size: TaskSize
    log_retention_days: int
    # Production keeps its secrets and logs when its stack is deleted; branch environments,
    # which are torn down routinely, do not leave them behind.
    retain_data: bool
    # NAT gateways of the environment's own VPC (each holds an Elastic IP; the default quota is
    # 5 per region). Production has one per AZ, so tasks keep their egress when an AZ fails;
    # the others share one, so several branch environments fit in an account.
    nat_gateways: int
    # The load balancer refuses to be deleted (production: a stray `cdk destroy` cannot take it down).
    deletion_protection: bool
    # The p99 latency alarm's threshold: ALB TargetResponseTime, i.e. until the first byte of the
    # answer (a stream's headers), so long streams do not raise it; assessments wait on the model.
    latency_p99_alarm_seconds: float
    # The WAF's rate-based rule: requests per source IP in any 5 minutes before it blocks that IP.
    waf_rate_limit: int
    # A person approves in the pipeline before the environment is deployed.
    manual_approval: bool


@dataclass(kw_only=True, frozen=True)
class AppConfig:
    """Account-wide settings of the CDK app. Defaults synthesize offline; deploy with real ones."""

    account: str = "111111111111"
    region: str = "us-east-1"
    base_domain: str = "example.org"
    hosted_zone_id: str = "Z0123456789EXAMPLE"
    # The stack's own VPC spans these; named here so synthesis needs no lookup.
    availability_zones: tuple[str, ...] = ()
    existing_vpc: ExistingVpc | None = None
    # Where the pipelines get the source from.
    github_owner: str = "example-org"
    github_repo: str = "aiproxy"
    codestar_connection_arn: str = (
        "arn:aws:codeconnections:us-east-1:111111111111:connection/00000000-0000-0000-0000-000000000000"
    )
    # Overrides of the per-type task size (context task_cpu, task_memory_mib, min_tasks, max_tasks).
    size_overrides: Mapping[str, int] = field(default_factory=dict)
    # Amazon Bedrock model ids / inference profile ids the service may invoke (none yet).
    bedrock_models: tuple[str, ...] = ()
    # Amazon Comprehend's DetectToxicContent for the task, for a safety policy with a `comprehend`
    # check (the policies are a runtime secret, so the stack cannot see them); off: no grant.
    safety_comprehend: bool = False
    # Provider credentials beyond the service's own secrets, created empty under each deployment's
    # prefix for an administrator to fill in: a Vertex AI upstream's service account key
    # (`credentials_secret`), the credentials clients name in the key store (`upstream_credentials`).
    provider_credentials: tuple[str, ...] = ()
    # Countries the WAF names in the region header (x-amzn-waf-aiproxy-region) from the caller's
    # address, for model group deployments with `regions`; a caller elsewhere gets no header.
    region_countries: tuple[str, ...] = ("US",)
    # Who gets each environment's alarms by e-mail (each address confirms its subscription once).
    alarm_emails: tuple[str, ...] = ()
    # A customer-managed KMS key per stack for its secrets, log groups and SNS topics (about
    # 1 USD a month per key); off: AWS-managed encryption.
    customer_managed_keys: bool = False
    # Prometheus' `GET /metrics` in every environment: a generated key (the secret `metrics_key`
    # under the deployment's prefix) given to the task as AIPROXY_METRICS_KEY, for a scraper.
    prometheus_metrics: bool = False
    # Production in another account than the pipeline (and the other environments); the region
    # may only repeat `region`. Its DNS delegation then needs a public zone in that account:
    # production_hosted_zone_id, for production_base_domain (default: base_domain).
    production_account: str | None = None
    production_region: str | None = None
    production_hosted_zone_id: str | None = None
    production_base_domain: str | None = None
    # Overrides of the per-type settings (None: the type's own value).
    production_manual_approval: bool | None = None
    waf_rate_limit: int | None = None
    latency_p99_alarm_seconds: float | None = None

    @property
    def zones(self) -> tuple[str, ...]:
        return self.availability_zones or (f"{self.region}a", f"{self.region}b")

    @property
    def production_elsewhere(self) -> bool:
        """Production runs in another account or region than the pipeline."""
        return (self.production_account or self.account, self.production_region or self.region) != (
            self.account,
            self.region,
        )


@dataclass(kw_only=True, frozen=True)
class ServiceEnvironment:
    """One deployed copy of the service: its names, type and size."""

    environment_type: str  # the service's ENVIRONMENT_TYPE: development, test or production
    branch: str
    subdomain: str
    base_domain: str
    size: TaskSize
    log_retention_days: int
    retain_data: bool
    nat_gateways: int
    deletion_protection: bool
    latency_p99_alarm_seconds: float
    waf_rate_limit: int
    manual_approval: bool
    # Where it runs, and the existing public zone of `base_domain` its own zone is delegated from.
    account: str
    region: str
    availability_zones: tuple[str, ...]
    hosted_zone_id: str
    existing_vpc: ExistingVpc | None
    alarm_emails: tuple[str, ...]
    customer_managed_key: bool
    prometheus_metrics: bool

    @property
    def dns_name(self) -> str:
        return f"{self.subdomain}.{self.base_domain}"

    @property
    def stack_name(self) -> str:
        return self.subdomain

    @property
    def url(self) -> str:
        return f"https://{self.dns_name}"
