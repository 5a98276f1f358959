"""What gets deployed where: typed settings per environment type and the naming rules.

docs/deploying.md: a pipeline of branch B, of environment type `production`, deploys a test
environment and then production; of type `development`, one environment. Names:

| type, branch            | environments (DNS subdomain = stack name) | pipeline stack       |
|-------------------------|-------------------------------------------|----------------------|
| production, main        | aiproxy-test, aiproxy                     | aiproxy-cicd         |
| production, other B     | aiproxy-test-B, aiproxy-B                 | aiproxy-cicd-B       |
| development, B          | aiproxy-dev-B                             | aiproxy-cicd-dev-B   |

Everything here is plain data: the account-wide `AppConfig` comes from code defaults overridden
by `cdk -c key=value` context, so the app synthesizes offline with no AWS credentials.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

NAME_PREFIX = "aiproxy"
DEFAULT_BRANCH = "main"
# Environment types of a pipeline (the `environment_type` context value).
PIPELINE_TYPES = ("development", "production")
# A branch name becomes part of a DNS label, so it must be one: lowercase letters, digits and
# inner hyphens. `aiproxy-test-` + branch must fit in the 63 characters of a label.
MAX_BRANCH_LENGTH = 63 - len(f"{NAME_PREFIX}-test-")
_BRANCH_PATTERN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
# Branch names whose stacks would take the name of another branch's or type's stack:
# production branch `test-x` would be `aiproxy-test-x`, the test environment of branch `x`.
RESERVED_BRANCH_WORDS = ("test", "dev", "cicd")


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


ENVIRONMENT_TYPE_SETTINGS: dict[str, EnvironmentTypeSettings] = {
    "development": EnvironmentTypeSettings(
        size=TaskSize(cpu=256, memory_mib=512, min_tasks=1, max_tasks=2),
        log_retention_days=7,
        retain_data=False,
        nat_gateways=1,
        deletion_protection=False,
        latency_p99_alarm_seconds=120,
        waf_rate_limit=1000,
        manual_approval=False,
    ),
    "test": EnvironmentTypeSettings(
        size=TaskSize(cpu=256, memory_mib=512, min_tasks=1, max_tasks=2),
        log_retention_days=30,
        retain_data=False,
        nat_gateways=1,
        deletion_protection=False,
        latency_p99_alarm_seconds=120,
        waf_rate_limit=1000,
        manual_approval=False,
    ),
    "production": EnvironmentTypeSettings(
        size=TaskSize(cpu=512, memory_mib=1024, min_tasks=2, max_tasks=6),
        log_retention_days=365,
        retain_data=True,
        nat_gateways=2,
        deletion_protection=True,
        # Chats answer within seconds and an assessment within a minute or two; past this, the
        # provider or the service is struggling.
        latency_p99_alarm_seconds=60,
        # Clients are servers (a school platform's backend), so many users share one IP.
        waf_rate_limit=3000,
        manual_approval=True,
    ),
}


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


def validate_branch(branch: str) -> str:
    """Return `branch` if stacks and DNS names can be made from it, else raise a clear error."""
    if not branch:
        raise ConfigurationError("branch is empty; pass -c branch=<git branch>")
    if "/" in branch:
        raise ConfigurationError(
            f"branch {branch!r} contains '/', which cannot be part of a DNS name or stack name; "
            "rename the branch (e.g. feature-x instead of feature/x)"
        )
    if len(branch) > MAX_BRANCH_LENGTH:
        raise ConfigurationError(
            f"branch {branch!r} is longer than {MAX_BRANCH_LENGTH} characters, too long for a DNS label"
        )
    if not _BRANCH_PATTERN.match(branch):
        raise ConfigurationError(
            f"branch {branch!r} is not usable in a DNS name; use lowercase letters, digits and "
            "hyphens, starting and ending with a letter or digit"
        )
    first_word = branch.split("-", 1)[0]
    if first_word in RESERVED_BRANCH_WORDS:
        reserved = ", ".join(repr(w) for w in RESERVED_BRANCH_WORDS)
        raise ConfigurationError(
            f"branch {branch!r} would collide with the stacks of another environment "
            f"(e.g. production branch 'test-x' would be named like the test environment of 'x'); "
            f"branch names may not be {reserved} nor start with one of them and a hyphen"
        )
    return branch


def validate_pipeline_type(environment_type: str) -> str:
    if environment_type not in PIPELINE_TYPES:
        raise ConfigurationError(
            f"environment_type {environment_type!r} is not valid; use one of: {', '.join(PIPELINE_TYPES)}"
        )
    return environment_type


# Fargate's task sizes: CPU units -> the memory sizes (MiB) allowed with them (Linux tasks).
FARGATE_MEMORY_MIB: dict[int, Sequence[int]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
# Production runs a task in each of its two availability zones, at the least.
PRODUCTION_MIN_TASKS = 2


def _describe(memory: Sequence[int]) -> str:
    if isinstance(memory, range):
        return f"{memory.start} to {memory[-1]} in steps of {memory.step}"
    return ", ".join(str(m) for m in memory)


def validate_size(size: TaskSize, environment_type: str) -> TaskSize:
    """Return `size` if Fargate can run it for `environment_type`, else raise a clear error."""
    if size.cpu not in FARGATE_MEMORY_MIB:
        raise ConfigurationError(
            f"task_cpu={size.cpu} is not a Fargate CPU size; use one of "
            f"{', '.join(str(cpu) for cpu in FARGATE_MEMORY_MIB)}"
        )
    memory = FARGATE_MEMORY_MIB[size.cpu]
    if size.memory_mib not in memory:
        raise ConfigurationError(
            f"task_memory_mib={size.memory_mib} does not go with task_cpu={size.cpu} on Fargate; "
            f"with {size.cpu} CPU units use {_describe(memory)} MiB"
        )
    if size.min_tasks > size.max_tasks:
        raise ConfigurationError(f"min_tasks {size.min_tasks} is above max_tasks {size.max_tasks}")
    if environment_type == "production" and size.min_tasks < PRODUCTION_MIN_TASKS:
        raise ConfigurationError(
            f"min_tasks={size.min_tasks} is too few for production, which runs at least "
            f"{PRODUCTION_MIN_TASKS} tasks (one per availability zone); use min_tasks={PRODUCTION_MIN_TASKS} "
            "or more"
        )
    return size


def _environment(config: AppConfig, environment_type: str, branch: str, subdomain: str) -> ServiceEnvironment:
    settings = ENVIRONMENT_TYPE_SETTINGS[environment_type]
    size = validate_size(replace(settings.size, **config.size_overrides), environment_type)
    manual_approval = settings.manual_approval
    if environment_type == "production" and config.production_manual_approval is not None:
        manual_approval = config.production_manual_approval
    placement = _placement(config, environment_type)
    return ServiceEnvironment(
        environment_type=environment_type,
        branch=branch,
        subdomain=subdomain,
        size=size,
        log_retention_days=settings.log_retention_days,
        retain_data=settings.retain_data,
        nat_gateways=settings.nat_gateways,
        deletion_protection=settings.deletion_protection,
        latency_p99_alarm_seconds=config.latency_p99_alarm_seconds or settings.latency_p99_alarm_seconds,
        waf_rate_limit=config.waf_rate_limit or settings.waf_rate_limit,
        manual_approval=manual_approval,
        alarm_emails=config.alarm_emails,
        customer_managed_key=config.customer_managed_keys,
        prometheus_metrics=config.prometheus_metrics,
        **placement,
    )


def _placement(config: AppConfig, environment_type: str) -> dict[str, Any]:
    """Account, region, zones, VPC and base zone of an environment of `environment_type`."""
    if environment_type != "production" or not config.production_elsewhere:
        return {
            "account": config.account,
            "region": config.region,
            "availability_zones": config.zones,
            "existing_vpc": config.existing_vpc,
            "base_domain": config.base_domain,
            "hosted_zone_id": config.hosted_zone_id,
        }
    account = config.production_account or config.account
    region = config.production_region or config.region
    if region != config.region:
        # CDK Pipelines would add a support stack in that region and allow the pipeline's role
        # KMS actions on every key ("*") to reach its replication bucket.
        raise ConfigurationError(
            f"production_region={region} differs from region={config.region}: the pipeline deploys "
            "to other accounts of its own region only (a cross-region pipeline would give its role "
            "rights on every KMS key of the account); leave production_region unset or equal to region"
        )
    if account != config.account and not config.production_hosted_zone_id:
        raise ConfigurationError(
            f"production_account={account} needs production_hosted_zone_id: production's DNS "
            f"delegation cannot be written into hosted zone {config.hosted_zone_id} of account "
            f"{config.account}; give a public zone in {account} (for production_base_domain, "
            f"default {config.base_domain})"
        )
    # The existing VPC is one of the pipeline's account: production elsewhere gets its own.
    return {
        "account": account,
        "region": region,
        "availability_zones": config.zones,
        "existing_vpc": None,
        "base_domain": config.production_base_domain or config.base_domain,
        "hosted_zone_id": config.production_hosted_zone_id or config.hosted_zone_id,
    }


def service_environments(config: AppConfig, environment_type: str, branch: str) -> list[ServiceEnvironment]:
    """The environments a pipeline of `branch` deploys, in deployment order."""
    validate_pipeline_type(environment_type)
    validate_branch(branch)
    if environment_type == "development":
        return [_environment(config, "development", branch, f"{NAME_PREFIX}-dev-{branch}")]
    suffix = "" if branch == DEFAULT_BRANCH else f"-{branch}"
    return [
        _environment(config, "test", branch, f"{NAME_PREFIX}-test{suffix}"),
        _environment(config, "production", branch, f"{NAME_PREFIX}{suffix}"),
    ]


def pipeline_stack_name(environment_type: str, branch: str) -> str:
    validate_pipeline_type(environment_type)
    validate_branch(branch)
    if environment_type == "development":
        return f"{NAME_PREFIX}-cicd-dev-{branch}"
    return f"{NAME_PREFIX}-cicd" if branch == DEFAULT_BRANCH else f"{NAME_PREFIX}-cicd-{branch}"


# --- reading `cdk -c key=value` context -----------------------------------------------------------

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]


def cdk_json_context() -> dict[str, Any]:
    """The context of cdk.json: the CDK feature flags and the example configuration."""
    return json.loads((REPOSITORY_ROOT / "cdk.json").read_text())["context"]


def _credential_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Secret names as the service reads them (lower-case letters, digits, _), none of its own."""
    from service.config.secrets import SECRET_NAMES

    for name in names:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,63}", name) or name in SECRET_NAMES:
            raise ConfigurationError(
                f"provider_credentials: {name!r} is not a secret name the service reads (lower-case "
                "letters, digits and _, not one of its own secrets)"
            )
    return names


def _countries(codes: tuple[str, ...]) -> tuple[str, ...]:
    for code in codes:
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise ConfigurationError(f"region_countries: {code!r} is not an ISO 3166-1 alpha-2 code (US, DE)")
    return codes


def _split(value: Any) -> tuple[str, ...]:
    """A list from context: a JSON list (cdk.json) or a comma-separated string (-c)."""
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


def _positive_int(key: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key}={value!r} is not a whole number") from None
    if number < 1:
        raise ConfigurationError(f"{key}={value!r} must be at least 1")
    return number


def _positive_number(key: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key}={value!r} is not a number") from None
    if number <= 0:
        raise ConfigurationError(f"{key}={value!r} must be above 0")
    return number


def _bool(key: str, value: Any) -> bool:
    """A flag from context: a JSON boolean (cdk.json) or true/false (-c)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0"):
        return False
    raise ConfigurationError(f"{key}={value!r} is not true or false")


_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


def _emails(key: str, value: Any) -> tuple[str, ...]:
    emails = _split(value)
    for email in emails:
        if not _EMAIL.match(email):
            raise ConfigurationError(f"{key}: {email!r} is not an e-mail address")
    return emails


_ACCOUNT = re.compile(r"^\d{12}$")


_SIZE_KEYS = {
    "task_cpu": "cpu",
    "task_memory_mib": "memory_mib",
    "min_tasks": "min_tasks",
    "max_tasks": "max_tasks",
}
_TEXT_KEYS = (
    "account",
    "region",
    "base_domain",
    "hosted_zone_id",
    "github_owner",
    "github_repo",
    "codestar_connection_arn",
    "production_account",
    "production_region",
    "production_hosted_zone_id",
    "production_base_domain",
)
# Context keys read as flags and numbers (the AppConfig attribute of the same name).
_FLAG_KEYS = ("customer_managed_keys", "prometheus_metrics", "production_manual_approval")
_NUMBER_KEYS = {"waf_rate_limit": _positive_int, "latency_p99_alarm_seconds": _positive_number}


def config_from_context(get: Callable[[str], Any]) -> AppConfig:
    """Build the AppConfig from context values (`get` is e.g. `app.node.try_get_context`)."""
    values: dict[str, Any] = {}
    for key in _TEXT_KEYS:
        value = get(key)
        if value is not None and str(value).strip():
            values[key] = str(value).strip()
    for key in ("account", "production_account"):
        if key in values and not _ACCOUNT.match(values[key]):
            raise ConfigurationError(f"{key}={values[key]!r} is not a 12-digit AWS account id")
    if get("availability_zones"):
        values["availability_zones"] = _split(get("availability_zones"))
    if get("bedrock_models"):
        values["bedrock_models"] = _split(get("bedrock_models"))
    if get("alarm_emails"):
        values["alarm_emails"] = _emails("alarm_emails", get("alarm_emails"))
    if get("provider_credentials"):
        values["provider_credentials"] = _credential_names(_split(get("provider_credentials")))
    if get("region_countries"):
        values["region_countries"] = _countries(_split(get("region_countries")))
    for key in _FLAG_KEYS:
        if get(key) is not None and str(get(key)).strip():
            values[key] = _bool(key, get(key))
    for key, parse in _NUMBER_KEYS.items():
        if get(key) is not None and str(get(key)).strip():
            values[key] = parse(key, get(key))
    sizes = {attr: _positive_int(key, get(key)) for key, attr in _SIZE_KEYS.items() if get(key) is not None}
    if sizes:
        values["size_overrides"] = sizes
    if get("vpc_id"):
        values["existing_vpc"] = _existing_vpc(get, values.get("availability_zones"))
    return AppConfig(**values)


def _existing_vpc(get: Callable[[str], Any], zones: tuple[str, ...] | None) -> ExistingVpc:
    public = _split(get("vpc_public_subnet_ids") or "")
    private = _split(get("vpc_private_subnet_ids") or "")
    if not zones:
        raise ConfigurationError("vpc_id needs availability_zones (comma-separated) as well")
    for key, subnets in (("vpc_public_subnet_ids", public), ("vpc_private_subnet_ids", private)):
        if len(subnets) != len(zones):
            raise ConfigurationError(
                f"{key} must list one subnet per availability zone ({len(zones)}), got {len(subnets)}"
            )
    return ExistingVpc(
        vpc_id=str(get("vpc_id")),
        availability_zones=zones,
        public_subnet_ids=public,
        private_subnet_ids=private,
    )


def _context_values(config: AppConfig) -> dict[str, str]:
    """Every configured value as `-c` context text (comma-joined lists, lowercase flags)."""
    values: dict[str, str] = {}
    for key in _TEXT_KEYS:
        if getattr(config, key) is not None:
            values[key] = getattr(config, key)
    if config.availability_zones:
        values["availability_zones"] = ",".join(config.availability_zones)
    for key in ("bedrock_models", "alarm_emails", "provider_credentials", "region_countries"):
        if getattr(config, key):
            values[key] = ",".join(getattr(config, key))
    for key in _FLAG_KEYS:
        if getattr(config, key) is not None:
            values[key] = str(getattr(config, key)).lower()
    for key in _NUMBER_KEYS:
        if getattr(config, key) is not None:
            values[key] = f"{getattr(config, key):g}"
    for key, attr in _SIZE_KEYS.items():
        if attr in config.size_overrides:
            values[key] = str(config.size_overrides[attr])
    if config.existing_vpc is not None:
        vpc = config.existing_vpc
        values["vpc_id"] = vpc.vpc_id
        values["availability_zones"] = ",".join(vpc.availability_zones)
        values["vpc_public_subnet_ids"] = ",".join(vpc.public_subnet_ids)
        values["vpc_private_subnet_ids"] = ",".join(vpc.private_subnet_ids)
    return values


@dataclass(kw_only=True, frozen=True)
class Deployment:
    """What one run of the app builds: a pipeline type and branch, and the account-wide config."""

    environment_type: str
    branch: str
    config: AppConfig
    # What the app reads with no `-c` at all (the code's defaults and cdk.json): the pipeline's
    # own `cdk synth` reads cdk.json from the checkout, so only the rest is passed with -c.
    file_config: AppConfig = field(default_factory=AppConfig, compare=False, repr=False)

    @property
    def environments(self) -> list[ServiceEnvironment]:
        return service_environments(self.config, self.environment_type, self.branch)

    @property
    def pipeline_stack_name(self) -> str:
        return pipeline_stack_name(self.environment_type, self.branch)

    def context(self) -> dict[str, str]:
        """The `cdk -c` context that rebuilds this deployment: what differs from cdk.json and
        the defaults.

        The pipeline synthesizes with it, so the pipeline keeps the configuration it was
        created with (`cdk deploy -c ...`) when it updates itself, while a change committed to
        cdk.json reaches it through the repository.
        """
        values = {"environment_type": self.environment_type, "branch": self.branch}
        current, baseline = _context_values(self.config), _context_values(self.file_config)
        values.update({key: value for key, value in current.items() if baseline.get(key) != value})
        return values

    def context_arguments(self) -> str:
        """`-c key=value ...` for a shell command line (values quoted where needed)."""
        return " ".join(f"-c {shlex.quote(f'{key}={value}')}" for key, value in self.context().items())


def deployment_from_context(
    get: Callable[[str], Any], file_context: Mapping[str, Any] | None = None
) -> Deployment:
    """The deployment that `cdk -c environment_type=... -c branch=...` asks for (default: main).

    `file_context` is cdk.json's context alone (what `get` returns with no -c).
    """
    environment_type = str(get("environment_type") or "production")
    branch = str(get("branch") or DEFAULT_BRANCH)
    deployment = Deployment(
        environment_type=validate_pipeline_type(environment_type),
        branch=validate_branch(branch),
        config=config_from_context(get),
        file_config=config_from_context((file_context or {}).get),
    )
    deployment.environments  # noqa: B018 - validates sizes now, with a clear message
    return deployment
