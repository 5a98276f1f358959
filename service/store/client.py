"""The client of the store (Redis or Valkey, standalone or clustered), and what it raises when it fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.credentials import CredentialProvider
from redis.retry import Retry

# What a store that cannot be reached raises (the cluster client's own errors are not RedisErrors).
STORE_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)

# The client store_client gives: standalone or clustered, both with the commands the service uses.
Store: TypeAlias = redis.Redis | RedisCluster

_SOCKET_TIMEOUT = 0.5  # a store slower than this counts as down: the request must not wait on it


class SecretPassword(CredentialProvider):
    """The store's user and password, the password read from the secret at each new connection
    (so a rotated secret is used without a restart)."""

    def __init__(self, username: str | None, password: Callable[[], str | None]) -> None:
        self.username = username
        self.password = password

    def get_credentials(self) -> tuple[str] | tuple[str, str]:
        password = self.password() or ""
        return (self.username, password) if self.username else (password,)


def store_client(url: str, password: Callable[[], str | None], *, cluster: bool = False) -> Store:
    """A client of the store at `url`, its password from `password()` (None: no AUTH); with
    `cluster`, one that speaks the cluster protocol (a clustered Valkey, ElastiCache Serverless)."""
    username = urlsplit(url).username
    # No retries: a store that fails is skipped for a while by its users (SharedLimiter), not waited for.
    options: dict[str, Any] = {
        "socket_timeout": _SOCKET_TIMEOUT,
        "socket_connect_timeout": _SOCKET_TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
    if password() or username:
        options["credential_provider"] = SecretPassword(username, password)
    if cluster:
        return RedisCluster.from_url(url, **options)
    return redis.Redis.from_url(url, **options)
