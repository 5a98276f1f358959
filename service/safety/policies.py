"""The app's current safety policies, re-read whenever their secret's value changes.

Read like the client key store (`service.governance.auth.ClientKeys`): AIPROXY_SAFETY_POLICIES, or
the secret `safety_policies` in a deployment, within AIPROXY_SECRETS_TTL of a change. At start-up
an invalid value, or a client of the key store naming a policy that is not defined, stops the
server with one line naming it. Later, an invalid or missing value keeps the last valid policies in
force (losing them would stop checking students' requests), with one ERROR line; a client naming a
policy that does not exist (a key store changed since) is refused with 503 (fail closed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

from service.config.secrets import SAFETY_POLICIES, SecretStore
from service.config.setting import SettingsError
from service.governance.key_store import KeyStore
from service.safety.answers import unavailable
from service.safety.policy import Policy, parse_policies

log = logging.getLogger(__name__)


class SafetyPolicyError(SettingsError):
    """The policies are not valid, or a client names one that does not exist. One line."""


def undefined_policies(store: KeyStore | None, policies: Mapping[str, Policy]) -> list[tuple[str, str]]:
    """(client, policy) of every client naming a policy not in `policies`."""
    clients = store.clients.values() if store is not None else ()
    return [(c.name, c.safety) for c in clients if c.safety is not None and c.safety not in policies]


class SafetyPolicies:
    def __init__(self, secrets: SecretStore) -> None:
        self._secrets = secrets
        self._lock = threading.Lock()
        self._raw: str | None = None
        self._policies: Mapping[str, Policy] = {}
        self._rejected_raw: str | None = None
        self._lost = False  # the secret went missing: logged once

    def load_at_start(self, store: KeyStore | None) -> Mapping[str, Policy]:
        """Read the policies once; raise SafetyPolicyError when start-up must stop."""
        raw = self._secrets.get(SAFETY_POLICIES)
        source = self._secrets.source_of(SAFETY_POLICIES)
        policies: Mapping[str, Policy] = {}
        if raw is not None:
            try:
                policies = parse_policies(raw)
            except ValueError as error:
                raise SafetyPolicyError(f"the safety policies in {source} are not valid: {error}") from None
        missing = undefined_policies(store, policies)
        if missing:
            client, name = missing[0]
            raise SafetyPolicyError(
                f"client {client!r} of the key store names the safety policy {name!r}, "
                f"which {source} does not define"
            )
        self._raw, self._policies = raw, policies
        if raw is not None:
            log.info("Safety policies loaded from %s: %s", source, ", ".join(policies) or "none")
        return policies

    def current(self) -> Mapping[str, Policy]:
        raw = self._secrets.get(SAFETY_POLICIES)
        if raw is None:
            if self._raw is not None and not self._lost:
                self._lost = True
                log.error("The safety policies are now missing or empty; keeping the last valid ones")
            return self._policies
        if raw == self._raw or raw == self._rejected_raw:
            return self._policies  # unchanged, or already refused
        with self._lock:
            if raw == self._raw:
                return self._policies
            source = self._secrets.source_of(SAFETY_POLICIES)
            try:
                policies = parse_policies(raw)
            except ValueError as error:
                self._rejected_raw = raw
                log.error(
                    "The safety policies in %s are not valid (%s); keeping the last valid ones", source, error
                )
                return self._policies
            self._raw, self._policies, self._lost = raw, policies, False
            log.info("Safety policies reloaded from %s: %s", source, ", ".join(policies) or "none")
            return policies

    def get(self, name: str) -> Policy:
        """The policy `name`; SafetyUnavailable (503) when none is defined by that name."""
        policy = self.current().get(name)
        if policy is None:
            log.error("A client names the safety policy %r, which is not defined; refusing its request", name)
            raise unavailable()
        return policy
