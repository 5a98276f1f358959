"""What one run of the app deploys: a pipeline's environments, each its type's settings (table.py)
with the account-wide configuration's overrides and placement applied.

Everything here is plain data: the account-wide `AppConfig` comes from code defaults overridden
by `cdk -c key=value` context, so the app synthesizes offline with no AWS credentials.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from infra_cdk.environments.config import AppConfig, ConfigurationError, ServiceEnvironment
from infra_cdk.environments.context import config_from_context, context_values
from infra_cdk.environments.naming import (
    DEFAULT_BRANCH,
    environment_subdomains,
    pipeline_stack_name,
    validate_branch,
    validate_pipeline_type,
)
from infra_cdk.environments.sizes import validate_size
from infra_cdk.environments.table import ENVIRONMENT_TYPE_SETTINGS


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
    return [
        _environment(config, each_type, branch, subdomain)
        for each_type, subdomain in environment_subdomains(environment_type, branch)
    ]


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
        current, baseline = context_values(self.config), context_values(self.file_config)
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
