"""Secrets: the naming convention and a cached loader.

A secret `name` comes from the environment variable `env_variable(name)` (or config.txt) when that
is set; otherwise, in a deployment (ENVIRONMENT_TYPE and ENVIRONMENT both set), from AWS Secrets
Manager with the id `secret_id(...)`. The CDK app imports `SECRET_NAMES` and `secret_id` so that
the secrets it creates are exactly the ones read here.

Values are cached for `ttl` seconds so a rotated secret takes effect without a restart. A missing
or empty secret, or an AWS error, gives one WARNING (again only when the state changes) and
`None`: whatever needs the secret is disabled, the service keeps running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

OPENAI_API_KEY = "openai_api_key"
HONEYBADGER_API_KEY = "honeybadger_api_key"
CLIENT_API_KEYS = "client_api_keys"
REDIS_AUTH = "redis_auth"  # the shared limits store's password (AIPROXY_REDIS_URL)
SAFETY_POLICIES = "safety_policies"  # named safety policies (service.safety.policy); `{}`: none
END_USER_HASH_KEY = "end_user_hash_key"  # keys the hash that names end users in records
ANSWER_SIGNING_KEY = "answer_signing_key"  # signs answers (X-AIProxy-Signature)

# Every secret the service reads; the CDK service stack creates exactly these.
SECRET_NAMES: tuple[str, ...] = (
    HONEYBADGER_API_KEY,
    OPENAI_API_KEY,
    CLIENT_API_KEYS,
    REDIS_AUTH,
    SAFETY_POLICIES,
    END_USER_HASH_KEY,
    ANSWER_SIGNING_KEY,
)

# Secrets whose environment override is not simply the upper-cased name.
_ENV_OVERRIDES = {
    CLIENT_API_KEYS: "AIPROXY_CLIENT_KEYS",
    REDIS_AUTH: "AIPROXY_REDIS_PASSWORD",
    SAFETY_POLICIES: "AIPROXY_SAFETY_POLICIES",
    END_USER_HASH_KEY: "AIPROXY_END_USER_HASH_KEY",
    ANSWER_SIGNING_KEY: "AIPROXY_ANSWER_SIGNING_KEY",
}


def secret_id(environment_type: str, environment: str, name: str) -> str:
    """The Secrets Manager id of `name`, e.g. `production/aiproxy.example.org/openai_api_key`."""
    return f"{environment_type}/{environment}/{name}"


def secret_prefix(environment_type: str, environment: str) -> str:
    """The id prefix every secret of one deployment shares (the task role may read only these)."""
    return secret_id(environment_type, environment, "")


def env_variable(name: str) -> str:
    """The environment variable that overrides secret `name`."""
    return _ENV_OVERRIDES.get(name, name.upper())


def secrets_manager_client(source: Mapping[str, str]) -> Any:
    """A Secrets Manager client in the region the settings name (`service.config.aws`)."""
    from botocore.config import Config

    from service.config import aws

    # Short timeouts: a slow Secrets Manager must not hold a request for long.
    config = Config(connect_timeout=2, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return aws.client(source, "secretsmanager", config=config)


@dataclass
class _Entry:
    value: str | None
    fetched_at: float
    state: str  # "ok", "missing" or "error": a WARNING is logged when it changes


class SecretStore:
    """Reads secrets by name, caching each for `ttl` seconds. Safe to share between threads."""

    def __init__(
        self,
        source: Mapping[str, str],
        environment_type: str | None,
        environment: str | None,
        ttl: float = 300.0,
        client_factory: Callable[[], Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._environment_type = environment_type
        self._environment = environment
        self._ttl = ttl
        self._client_factory = client_factory or (lambda: secrets_manager_client(source))
        self._client: Any = None
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._asked: set[str] = set()
        # One lock per secret, held only while that secret is read from AWS.
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self._client_lock = threading.Lock()

    @property
    def uses_aws(self) -> bool:
        return bool(self._environment_type and self._environment)

    def source_of(self, name: str) -> str:
        """Where `name` is read from, for messages: an environment variable or a secret id."""
        variable = env_variable(name)
        if self._source.get(variable) or not self.uses_aws:
            return variable
        return self._secret_id(name)

    def get(self, name: str) -> str | None:
        self._asked.add(name)  # the keys of named upstreams are secrets too
        override = self._source.get(env_variable(name))
        if override:
            return override
        if not self.uses_aws:
            return None
        entry = self._entries.get(name)
        if entry is not None and self._clock() - entry.fetched_at < self._ttl:
            return entry.value
        lock = self._lock_for(name)
        if entry is not None and not lock.acquire(blocking=False):
            # Another request is refreshing this secret: serve the value we have meanwhile,
            # rather than making every request of the worker wait on Secrets Manager.
            return entry.value
        if entry is None:
            lock.acquire()  # nothing to serve yet: wait for the first read
        try:
            entry = self._entries.get(name)
            if entry is None or self._clock() - entry.fetched_at >= self._ttl:
                entry = self._entries[name] = self._fetch(name, entry)
            return entry.value
        finally:
            lock.release()

    def known_values(self) -> list[str]:
        """Every secret value currently held, so error reports can be scrubbed of them."""
        values = [self._source.get(env_variable(name)) for name in {*SECRET_NAMES, *self._asked}]
        values += [entry.value for entry in list(self._entries.values())]
        return [value for value in values if value]

    def _secret_id(self, name: str) -> str:
        """The id of secret `name` in Secrets Manager (asked only when `uses_aws`)."""
        environment_type, environment = self._environment_type, self._environment
        assert environment_type and environment, "secrets are read from AWS only when uses_aws"
        return secret_id(environment_type, environment, name)

    def _lock_for(self, name: str) -> threading.Lock:
        with self._locks_lock:
            return self._locks.setdefault(name, threading.Lock())

    def _fetch(self, name: str, previous: _Entry | None) -> _Entry:
        secret = self._secret_id(name)
        now = self._clock()
        try:
            with self._client_lock:
                if self._client is None:
                    self._client = self._client_factory()
            response = self._client.get_secret_value(SecretId=secret)
        except Exception as error:  # botocore raises many kinds; none may crash the service
            code = getattr(error, "response", {}).get("Error", {}).get("Code", type(error).__name__)
            if code == "ResourceNotFoundException":
                return self._settle(name, previous, _Entry(None, now, "missing"), secret)
            if previous is None or previous.state != "error":
                log.warning("Could not read secret %s (%s); keeping the last value", secret, code)
            # Keep serving the last good value through a transient AWS failure.
            return _Entry(previous.value if previous else None, now, "error")
        value = (response.get("SecretString") or "").strip() or None
        return self._settle(name, previous, _Entry(value, now, "ok" if value else "missing"), secret)

    @staticmethod
    def _settle(name: str, previous: _Entry | None, entry: _Entry, secret: str) -> _Entry:
        if entry.state == "missing" and (previous is None or previous.state != "missing"):
            log.warning("Secret %s is missing or empty; what needs %s is disabled", secret, name)
        return entry
