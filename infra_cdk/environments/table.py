"""The table of environment types: what development, test and production each get.

Written as what every type shares (`SHARED`) and, per type, only where it differs, so a change
to one value is made once and a difference between types is visible as such.
"""

from __future__ import annotations

from dataclasses import replace

from infra_cdk.environments.config import EnvironmentTypeSettings, TaskSize

# What an environment gets unless its type says otherwise: small, torn down routinely, nothing
# kept when its stack goes, and deployed without a person approving.
SHARED = EnvironmentTypeSettings(
    size=TaskSize(cpu=256, memory_mib=512, min_tasks=1, max_tasks=2),
    log_retention_days=7,
    retain_data=False,
    nat_gateways=1,
    deletion_protection=False,
    latency_p99_alarm_seconds=120,
    waf_rate_limit=1000,
    manual_approval=False,
)

ENVIRONMENT_TYPE_SETTINGS: dict[str, EnvironmentTypeSettings] = {
    "development": SHARED,
    # Test is development's twin except that it keeps its logs for a month.
    "test": replace(SHARED, log_retention_days=30),
    "production": replace(
        SHARED,
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
