"""Who the end user of a request is, what their client lets through, and how records name them.

An end user (a student) is named by a client in one of two ways (docs/end-users.md):

- a signed end-user token (`service.governance.end_user_tokens`), which a browser may hold;
- the header `X-AIProxy-End-User` on a client-key request, when the client's entry sets
  `"trust_end_user_header": true` (a server-side caller that knows its user).

Records never hold the end user's id: usage records and access lines carry `end_user`, the
HMAC-SHA256 of the id keyed with the proxy's secret `end_user_hash_key` (hex). Whoever holds the
id and the secret can find one end user's records; nobody holding the logs alone can. The same
hash names the end user's counters in the limits store.

`ClientAccess` is what a key store entry says beyond the client's own limits: its token policy,
its end users' limits, whether it names end users in a header, the browser origins it allows, and
the models it may (`models`) or may not (`blocked_models`) use.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from service.config.secrets import END_USER_HASH_KEY, SecretStore
from service.core.errors import RequestRejected
from service.governance.end_user_limits import EndUserLimits, parse_end_user_limits
from service.governance.end_user_tokens import TokenPolicy, parse_policy

log = logging.getLogger(__name__)

END_USER_HEADER = "X-AIProxy-End-User"
ACCESS_FIELDS = (
    "end_user_tokens",
    "end_user",
    "trust_end_user_header",
    "origins",
    "models",
    "blocked_models",
)
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_MODEL = re.compile(r"^\S{1,200}$")
MAX_HEADER_END_USER = 256


@dataclass(frozen=True)
class EndUser:
    """The end user of one request."""

    hashed: str  # the keyed hash of their id: what records and the limits store hold
    limits: EndUserLimits | None  # their client's `end_user` limits, if any
    attributes: Mapping[str, str] = field(default_factory=dict)  # configured claims, for attribution
    blocked_models: frozenset[str] = frozenset()
    token_id: str | None = None  # the token's id (answers are signed over it)
    expires: float | None = None  # the token's expiry (its id is remembered until then)
    reject_replay: bool = False  # the token's id may be used once only
    sign: bool = False  # the token asks for signed answers
    region: str | None = None  # the token's region claim: it decides over AIPROXY_REGION_HEADER


@dataclass(frozen=True)
class ClientAccess:
    tokens: TokenPolicy | None = None
    end_user_limits: EndUserLimits | None = None
    trust_end_user_header: bool = False
    origins: frozenset[str] = frozenset()
    models: frozenset[str] | None = None  # None: every model
    blocked_models: frozenset[str] = frozenset()

    def refuse_model(self, model: Any, end_user: EndUser | None) -> None:
        """403 `model_not_allowed` for a model the entry or the end user's token does not allow."""
        if not isinstance(model, str):
            return  # no model: the upstream says what is wrong
        if (
            model in self.blocked_models
            or (self.models is not None and model not in self.models)
            or (end_user is not None and model in end_user.blocked_models)
        ):
            raise RequestRejected(
                f"The model {model[:200]!r} is not allowed for this caller.",
                status=403,
                code="model_not_allowed",
                param="model",
            )


NO_ACCESS = ClientAccess()


def parse_access(entry: Mapping[str, Any], where: str) -> ClientAccess:
    """The entry's access fields; ValueError naming the field that is wrong."""
    if not any(name in entry for name in ACCESS_FIELDS):
        return NO_ACCESS
    tokens = limits = None
    if entry.get("end_user_tokens") is not None:
        tokens = parse_policy(entry["end_user_tokens"], where)
    if entry.get("end_user") is not None:
        limits = parse_end_user_limits(entry["end_user"], where)
    trust = entry.get("trust_end_user_header", False)
    if not isinstance(trust, bool):
        raise ValueError(f'{where}: "trust_end_user_header" must be true or false')
    origins = entry.get("origins", [])
    if not isinstance(origins, list) or not all(isinstance(o, str) and _ORIGIN.match(o) for o in origins):
        raise ValueError(f'{where}: "origins" must list origins like "https://app.example.org" (no path)')
    if origins and tokens is None:
        raise ValueError(f'{where}: "origins" needs "end_user_tokens" (a browser holds a token, never a key)')
    return ClientAccess(
        tokens=tokens,
        end_user_limits=limits,
        trust_end_user_header=trust,
        origins=frozenset(origin.lower() for origin in origins),
        models=_models(entry, "models", where) if entry.get("models") is not None else None,
        blocked_models=_models(entry, "blocked_models", where) or frozenset(),
    )


def _models(entry: Mapping[str, Any], name: str, where: str) -> frozenset[str]:
    value = entry.get(name, [])
    if not isinstance(value, list) or not all(isinstance(m, str) and _MODEL.match(m) for m in value):
        raise ValueError(f'{where}: "{name}" must be a list of model names')
    return frozenset(value)


class EndUserHasher:
    """The keyed hash of an end user's id, with the secret `end_user_hash_key`.

    Without the secret (a workstation), a random key made at start-up stands in, with one WARNING:
    hashes then differ between processes and restarts, so per-end-user limits are not shared.
    """

    def __init__(self, store: SecretStore) -> None:
        self._store = store
        self._raw: str | None = None
        self._key = b""
        self._ephemeral: bytes | None = None

    def _current_key(self) -> bytes:
        raw = self._store.get(END_USER_HASH_KEY)
        if raw is None:
            if self._ephemeral is None:
                self._ephemeral = secrets.token_bytes(32)
                log.warning(
                    "No %s: end users are hashed with a key made for this process only; their "
                    "limits are not shared between processes (docs/end-users.md)",
                    self._store.source_of(END_USER_HASH_KEY),
                )
            return self._ephemeral
        if raw != self._raw:
            self._raw, self._key = raw, raw.encode("utf-8")
        return self._key

    def __call__(self, end_user_id: str) -> str:
        return hmac.new(self._current_key(), end_user_id.encode("utf-8"), hashlib.sha256).hexdigest()


def header_end_user(value: str) -> str | None:
    """The end user id of an `X-AIProxy-End-User` header, or None when it names none usable."""
    value = value.strip()
    return value if 0 < len(value) <= MAX_HEADER_END_USER else None
