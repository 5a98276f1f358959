"""Reading the configuration from CDK context: cdk.json's `context` and `cdk -c key=value`.

`config_from_context` turns context values (JSON values from cdk.json, text from -c) into an
`AppConfig`, refusing a value it cannot use with a message naming the key; `context_values`
writes an `AppConfig` back as -c text, for the pipeline to synthesize the same configuration.
docs/deploying.md lists every key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra_cdk.environments.config import AppConfig, ConfigurationError, ExistingVpc

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]


def cdk_json_context() -> dict[str, Any]:
    """The context of cdk.json: the CDK feature flags and the example configuration."""
    context: dict[str, Any] = json.loads((REPOSITORY_ROOT / "cdk.json").read_text())["context"]
    return context


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
_FLAG_KEYS = (
    "customer_managed_keys",
    "prometheus_metrics",
    "production_manual_approval",
    "safety_comprehend",
)
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


def context_values(config: AppConfig) -> dict[str, str]:
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
