"""The shared limits store: ElastiCache Serverless for Valkey, private, TLS, password (RBAC).

Serverless rather than a node: the store holds a few counters per client (kilobytes) at low
traffic. Serverless Valkey bills at least 100 MB of data (about 0.0084 USD an hour, some 6 USD a
month) plus ECPUs (0.0023 USD per million), spans the subnets' zones and patches itself; a
cache.t4g.micro node (about 0.0128 USD an hour for Valkey, some 9.30 USD a month) runs around the
clock in one zone, and a replica for a second zone doubles that. docs/deploying-pipeline-changes.md
has the reasoning.

Serverless caches always encrypt in transit and at rest; access is through ElastiCache RBAC:
the service's user authenticates with the `redis_auth` secret (CloudFormation resolves it at
deploy time, so the password never appears in the template). A user group must also hold a
user named `default`, which every connection starts as: here it is switched off.
"""

from __future__ import annotations

import hashlib
import re

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticache as elasticache
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

ENGINE = "valkey"
MAJOR_ENGINE_VERSION = "8"
PORT = 6379
USER_NAME = "aiproxy"
# Data commands and scripts on any key; no @dangerous (FLUSHALL, CONFIG, KEYS, DEBUG ...), so the
# password cannot wipe or reconfigure the store.
ACCESS_STRING = "on ~* &* +@all -@dangerous"
# The `default` user every connection starts as may do nothing: clients AUTH as USER_NAME.
DEFAULT_USER_ACCESS_STRING = "off -@all"
# Counters are tiny: a cap on stored data bounds the bill if a bug writes without expiry. The cap
# also bounds the answer cache (service.cache): Serverless has no parameter group, so no
# maxmemory-policy to choose; at the cap it evicts the least recently used keys that have a TTL,
# and every cached answer has one (its client's ttl_s). docs/cache.md has the reasoning.
MAX_DATA_STORAGE_GB = 1
# ElastiCache ids: a letter first, letters, digits and single hyphens, at most 40 characters.
MAX_ID_LENGTH = 40


def physical_id(name: str, suffix: str) -> str:
    """`<name>-<suffix>` as an ElastiCache id, shortened with a hash of `name` when too long."""
    clean = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", name.lower())).strip("-")
    candidate = f"{clean}-{suffix}"
    if len(candidate) <= MAX_ID_LENGTH:
        return candidate
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    head = clean[: MAX_ID_LENGTH - len(suffix) - len(digest) - 2].rstrip("-")
    return f"{head}-{digest}-{suffix}"


class SharedStore(Construct):
    """Exposes `cache`, `security_group`, `users`, `user_group` and `url` (AIPROXY_REDIS_URL)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        clients: ec2.IConnectable,
        password: secretsmanager.ISecret,
        name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Shared limits store - Valkey, from the service tasks only",
            allow_all_outbound=False,
        )
        self.security_group.connections.allow_from(clients, ec2.Port.tcp(PORT), "Service tasks to Valkey")

        # Resolved by CloudFormation from Secrets Manager when it creates or updates the user.
        secret_password = password.secret_value.unsafe_unwrap()
        service_user = elasticache.CfnUser(
            self,
            "ServiceUser",
            engine=ENGINE,
            user_id=physical_id(name, "service"),
            user_name=USER_NAME,
            access_string=ACCESS_STRING,
            authentication_mode={"Type": "password", "Passwords": [secret_password]},
        )
        # A Valkey user group takes only users that authenticate, so `default` has the password
        # too, and is switched off.
        default_user = elasticache.CfnUser(
            self,
            "DefaultUser",
            engine=ENGINE,
            user_id=physical_id(name, "default"),
            user_name="default",
            access_string=DEFAULT_USER_ACCESS_STRING,
            authentication_mode={"Type": "password", "Passwords": [secret_password]},
        )
        self.users = (service_user, default_user)
        self.user_group = elasticache.CfnUserGroup(
            self,
            "UserGroup",
            engine=ENGINE,
            user_group_id=physical_id(name, "users"),
            user_ids=[user.ref for user in self.users],
        )
        subnets = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        self.cache = elasticache.CfnServerlessCache(
            self,
            "Cache",
            engine=ENGINE,
            major_engine_version=MAJOR_ENGINE_VERSION,
            serverless_cache_name=physical_id(name, "limits"),
            description="AI Proxy shared limits (per-client counters)",
            subnet_ids=subnets.subnet_ids,
            security_group_ids=[self.security_group.security_group_id],
            user_group_id=self.user_group.ref,
            cache_usage_limits=elasticache.CfnServerlessCache.CacheUsageLimitsProperty(
                data_storage=elasticache.CfnServerlessCache.DataStorageProperty(
                    unit="GB", maximum=MAX_DATA_STORAGE_GB
                )
            ),
        )
        self.url = f"rediss://{USER_NAME}@{self.cache.attr_endpoint_address}:{self.cache.attr_endpoint_port}"
