"""The client key store: its format, and its parsing into `KeyStore` and `Client` values.

The key store is the JSON secret `client_api_keys` (or AIPROXY_CLIENT_KEYS):

    {"<client>": {"keys": ["<sha256 hex of a key>", ...], "rpm": 600, "max_concurrent": 50,
                  "tpm": 200000, "budget_usd_per_day": 20, "budget_usd_per_month": 300,
                  "safety": "students"}}

(every field but `keys` optional; `service.governance.limits` says what each limit does; `safety`
names the client's safety policy, `service.safety`, which checks that the policy exists). An
entry may also turn the answer cache on for its client: `"cache": {"ttl_s": 3600, ...}` and
`"cache_nondeterministic"` (`service.cache.settings`); let its end users call (`end_user_tokens`,
`end_user`, `trust_end_user_header`, `origins`) and restrict its models (`models`,
`blocked_models`): `service.governance.end_users`.
`"upstream_credentials": {"vertex": "vertex_sa_tutor", "openai": "openai_key_chat_lab"}` names,
per upstream (`openai` is the default one), the secret holding the credential the client's
requests use there instead of the upstream's own: a product that brings its own provider account
pays with it, and usage records say so (service.gateway.credentials).

Only hashes are stored, so the store itself cannot be used to call the proxy. A client may have
several keys at once, which is how a key is rotated without downtime. A bad value of any field
makes the whole store invalid, with one line naming the client and the field (never a key).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.cache.settings import CacheSettings, parse_cache_settings
from service.config.setting import SettingsError
from service.core import request_state
from service.governance import limits
from service.governance.end_user_tokens import Claims as EndUserClaims
from service.governance.end_user_tokens import (
    InvalidToken,
    token_header,
    unverified_issuer,
)
from service.governance.end_users import (
    ACCESS_FIELDS,
    NO_ACCESS,
    ClientAccess,
    parse_access,
)

KEY_PREFIX = "aip_"
CLIENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
RESERVED_NAMES = (request_state.ANONYMOUS,)  # what logs show for requests without a client
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_ENTRY_FIELDS = (
    "keys",
    "rpm",
    "max_concurrent",
    "tpm",
    "budget_usd_per_day",
    "budget_usd_per_month",
    "safety",
    "cache",
    "cache_nondeterministic",
    *ACCESS_FIELDS,
    "upstream_credentials",
)
# A credential is a secret's name: its environment variable is the name upper-cased.
CREDENTIAL_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_MAX_LIMIT = 100000
_MAX_TPM = 1_000_000_000
_MAX_BUDGET = 10_000_000.0

# One message for a missing, malformed or wrong key: the answer must not help guess which.


class KeyStoreError(SettingsError):
    """The key store is missing where it is required, or is not valid. One line, no store content."""


def hash_key(key: str) -> str:
    """The form a key is stored in: the sha256 of its UTF-8 bytes, as 64 lower-case hex digits."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Client:
    name: str
    key_hashes: tuple[str, ...]
    limits: limits.Limits
    safety: str | None = None  # the name of the client's safety policy (service.safety)
    cache: CacheSettings | None = None  # the answer cache, when the entry turns it on
    access: ClientAccess = NO_ACCESS  # end users, origins and models (service.governance.end_users)
    # Per upstream, the secret whose credential this client's requests use there.
    upstream_credentials: Mapping[str, str] = field(default_factory=dict)


class KeyStore:
    """A parsed, validated key store."""

    def __init__(self, clients: Mapping[str, Client]) -> None:
        self.clients = dict(clients)
        # Every (hash, client) pair, in one list, so a lookup always compares against all of them.
        self._hashes = [
            (digest.encode("ascii"), client)
            for client in self.clients.values()
            for digest in client.key_hashes
        ]
        # Clients that issue end-user tokens, by the `kid`s of their keys (and by name: `iss`).
        self._kids = {
            key.kid: client
            for client in self.clients.values()
            if client.access.tokens is not None
            for key in client.access.tokens.keys
            if key.kid is not None
        }
        self.issues_tokens = any(client.access.tokens is not None for client in self.clients.values())
        # Every origin some client allows: a CORS preflight names no client.
        self.origins = frozenset(o for client in self.clients.values() for o in client.access.origins)

    def authenticate(self, key: str) -> Client | None:
        """The client that owns `key`, or None.

        The key is hashed, and the hash is compared with every stored hash in constant time
        without stopping at a match, so the time taken does not tell which hash matched or
        how close a guess came.
        """
        presented = hash_key(key).encode("ascii")
        found = None
        for digest, client in self._hashes:
            if hmac.compare_digest(presented, digest):
                found = client
        return found

    def verify_token(self, token: str, now: float) -> tuple[Client, EndUserClaims]:
        """The client that issued `token` and what it says; InvalidToken when it is not valid."""
        kid, algorithm = token_header(token)
        client = self._kids.get(kid) if kid is not None else None
        if client is None:
            issuer = unverified_issuer(token)
            named = self.clients.get(issuer) if issuer is not None else None
            # A kid no key of the store has: only an issuer whose keys are fetched (jwks_url) may know it.
            tokens = named.access.tokens if named is not None else None
            if tokens is not None and (kid is None or tokens.jwks_url):
                client = named
        if client is None or client.access.tokens is None:
            raise InvalidToken("no client issues tokens with its kid or iss")
        policy = client.access.tokens
        claims = policy.verify(token, policy.candidates(kid, algorithm or "", token), now)
        if claims.issuer is not None and claims.issuer != client.name:
            raise InvalidToken("its iss is not the client of its key")
        return client, claims


def parse_key_store(
    raw: str, default_limits: limits.Limits, upstreams: Collection[str] | None = None
) -> KeyStore:
    """Parse and validate the store's JSON; raise ValueError naming the problem, never the content.
    `upstreams`, when given, are the names `upstream_credentials` may use."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError('must be a JSON object of clients: {"<client>": {"keys": ["<sha256 hex>"]}}')
    clients: dict[str, Client] = {}
    owner: dict[str, str] = {}
    for position, (name, entry) in enumerate(data.items(), start=1):
        if not isinstance(name, str) or not CLIENT_NAME.match(name) or name in RESERVED_NAMES:
            # The name itself is not shown: a key pasted in the wrong place would end up in a log.
            raise ValueError(
                f"client number {position} has an invalid name; use 1 to 64 letters, digits, '.', '_' "
                f"or '-' (starting with a letter or digit), not {', '.join(map(repr, RESERVED_NAMES))}"
            )
        where = f"client {name!r}"
        if not isinstance(entry, dict):
            raise ValueError(f'{where} must be an object like {{"keys": ["<sha256 hex>"]}}')
        unknown = [field for field in entry if field not in _ENTRY_FIELDS]
        if unknown:
            raise ValueError(
                f"{where} has {len(unknown)} unknown field(s); allowed: {', '.join(_ENTRY_FIELDS)}"
            )
        hashes = entry.get("keys")
        if not isinstance(hashes, list):
            raise ValueError(f'{where} needs "keys": a list of sha256 hex digests')
        for index, digest in enumerate(hashes):
            if not isinstance(digest, str) or not _SHA256_HEX.match(digest.lower()):
                hint = (
                    " (it looks like a key: store its hash, from `python -m service.keys hash`)"
                    if isinstance(digest, str) and digest.startswith(KEY_PREFIX)
                    else ""
                )
                raise ValueError(f"{where}: keys[{index}] is not a sha256 hex digest (64 hex digits){hint}")
            digest = digest.lower()
            if digest in owner:
                raise ValueError(f"{where}: keys[{index}] is also a key of client {owner[digest]!r}")
            owner[digest] = name
        clients[name] = Client(
            name=name,
            key_hashes=tuple(digest.lower() for digest in hashes),
            limits=limits.Limits(
                rpm=_limit(entry, "rpm", default_limits.rpm, where),
                max_concurrent=_limit(entry, "max_concurrent", default_limits.max_concurrent, where),
                # Optional: absent or null, the client has no tokens-per-minute limit.
                tpm=None if entry.get("tpm") is None else _limit(entry, "tpm", None, where, high=_MAX_TPM),
                budget_usd_per_day=_budget(entry, "budget_usd_per_day", where),
                budget_usd_per_month=_budget(entry, "budget_usd_per_month", where),
            ),
            safety=_policy_name(entry, where),
            cache=parse_cache_settings(entry, where),
            access=parse_access(entry, where),
            upstream_credentials=_credentials(entry.get("upstream_credentials"), where, upstreams),
        )
    return KeyStore(clients)


def _credentials(value: Any, where: str, upstreams: Collection[str] | None) -> Mapping[str, str]:
    if value is None:
        return request_state.NO_CREDENTIALS
    example = '{"vertex": "vertex_sa_tutor"}'
    names = value.values() if isinstance(value, dict) else [None]
    if not all(isinstance(name, str) and CREDENTIAL_NAME.match(name) for name in names):
        raise ValueError(
            f'{where}: "upstream_credentials" must map upstream names to secret names (lower-case '
            f"letters, digits and _), e.g. {example}"
        )
    unknown = sorted(name for name in value if upstreams is not None and name not in upstreams)
    if unknown:
        raise ValueError(
            f'{where}: "upstream_credentials" names upstreams that are not configured: '
            f"{', '.join(map(repr, unknown))} (configured: {', '.join(sorted(upstreams or ()))})"
        )
    return dict(value)


def _limit(entry: dict[str, Any], field: str, default: int | None, where: str, high: int = _MAX_LIMIT) -> int:
    value = entry.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f'{where}: "{field}" must be a whole number from 1 to {high:,}')
    return value


def _policy_name(entry: dict[str, Any], where: str) -> str | None:
    value = entry.get("safety")
    if value is not None and (not isinstance(value, str) or not CLIENT_NAME.match(value)):
        raise ValueError(f'{where}: "safety" must name a safety policy (letters, digits, ".", "_", "-")')
    return value


def _budget(entry: dict[str, Any], field: str, where: str) -> float | None:
    value = entry.get(field)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= _MAX_BUDGET:
        raise ValueError(
            f'{where}: "{field}" must be an amount in US dollars above 0, at most {_MAX_BUDGET:,.0f}'
        )
    return float(value)
