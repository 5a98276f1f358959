"""Client authentication: the key store, key lookup, and the gate every request passes.

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

Only hashes are stored, so the store itself cannot be used to call the proxy. A client may have
several keys at once, which is how a key is rotated without downtime. The store is read through
the app's SecretStore, so a changed secret takes effect within AIPROXY_SECRETS_TTL seconds.

Every route except `GET /` (the load balancer's health check) and `GET /metrics` (its own key)
needs a key when a store is configured; the request pipeline (`service.edge.pipeline`) asks
`ClientGate` before anything else.
Without a store the proxy runs open, which is refused in `test` and `production`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.cache.settings import CacheSettings, parse_cache_settings
from service.config.secrets import CLIENT_API_KEYS, SecretStore, env_variable
from service.config.setting import SettingsError
from service.config.settings import Settings
from service.core import request_state
from service.core.errors import ProxyError, Unauthenticated, Unavailable
from service.governance import limits
from service.governance.end_user_tokens import Claims as EndUserClaims
from service.governance.end_user_tokens import (
    InvalidToken,
    looks_like_token,
    token_header,
    unverified_issuer,
)
from service.governance.end_users import (
    ACCESS_FIELDS,
    NO_ACCESS,
    ClientAccess,
    EndUser,
    EndUserHasher,
    header_end_user,
    parse_access,
)

log = logging.getLogger(__name__)

KEY_PREFIX = "aip_"
# Environment types where running without client authentication is refused.
AUTH_REQUIRED_IN = ("test", "production")
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
)
_MAX_LIMIT = 100000
_MAX_TPM = 1_000_000_000
_MAX_BUDGET = 10_000_000.0
_MAX_KEY_LENGTH = 1024  # longer Authorization values are refused without hashing them

# One message for a missing, malformed or wrong key: the answer must not help guess which.
UNAUTHORIZED_MESSAGE = (
    "Missing or invalid client key. Send the key the proxy's operators gave you as "
    "'Authorization: Bearer <key>'."
)
FROM_A_BROWSER_MESSAGE = (
    "A client key is never sent from a browser (this request has an Origin header); a browser "
    "sends an end-user token its application issued (docs/end-users.md)."
)


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


def parse_key_store(raw: str, default_limits: limits.Limits) -> KeyStore:
    """Parse and validate the store's JSON; raise ValueError naming the problem, never the content."""
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
        )
    return KeyStore(clients)


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


class ClientKeys:
    """The app's current key store, re-parsed whenever the secret's value changes.

    `current()` is None while the proxy runs open (no store at start-up, outside test and
    production). Once a store has been read the proxy never goes back to open: a store that
    becomes invalid keeps the last valid one in force, and one that disappears refuses every
    request (503), each with one ERROR log line.
    """

    def __init__(self, secrets: SecretStore, settings: Settings) -> None:
        self._secrets = secrets
        self._default_limits = default_limits(settings)
        self._lock = threading.Lock()
        self._raw: str | None = None
        self._store: KeyStore | None = None
        self._lost = False  # a store was in force and the secret is now missing or empty
        self._rejected_raw: str | None = None  # the last invalid value, to log it once

    def load_at_start(self, environment_type: str | None) -> KeyStore | None:
        """Read the store once; raise KeyStoreError when start-up must stop."""
        raw = self._secrets.get(CLIENT_API_KEYS)
        source = self._secrets.source_of(CLIENT_API_KEYS)
        if raw is None:
            if environment_type in AUTH_REQUIRED_IN:
                where = env_variable(CLIENT_API_KEYS)
                if self._secrets.uses_aws:
                    where += f" or the secret {source}"
                raise KeyStoreError(
                    f"no client key store: ENVIRONMENT_TYPE={environment_type} requires client "
                    f"authentication; set {where} (README: Client keys)"
                )
            log.warning(
                "No client key store (%s): the proxy is OPEN, every route answers without a client key",
                source,
            )
            return None
        try:
            store = parse_key_store(raw, self._default_limits)
        except ValueError as error:
            raise KeyStoreError(f"the client key store in {source} is not valid: {error}") from None
        self._raw, self._store = raw, store
        log.info("Client key store loaded from %s: %d client(s)", source, len(store.clients))
        return store

    def current(self) -> KeyStore | None:
        raw = self._secrets.get(CLIENT_API_KEYS)
        with self._lock:
            if raw == self._raw:
                if self._lost and raw is not None:
                    self._lost = False
                    log.info("The client key store is back; accepting client keys again")
                return self._store
            source = self._secrets.source_of(CLIENT_API_KEYS)
            if raw is None:
                if self._store is not None and not self._lost:
                    self._lost = True
                    log.error(
                        "The client key store %s is now missing or empty; refusing every request", source
                    )
                return self._store
            if raw == self._rejected_raw:
                return self._store  # still the value already refused: do not parse it per request
            try:
                store = parse_key_store(raw, self._default_limits)
            except ValueError as error:
                self._rejected_raw = raw
                log.error(
                    "The client key store in %s is not valid (%s); keeping the last valid one",
                    source,
                    error,
                )
                return self._store
            self._raw, self._store, self._lost = raw, store, False
            log.info("Client key store reloaded from %s: %d client(s)", source, len(store.clients))
            return store

    @property
    def lost(self) -> bool:
        return self._lost


def presented_key(authorization: str) -> str:
    """The key in an Authorization value: `Bearer <key>`, or the bare key older clients send."""
    value = authorization.strip()
    scheme, _, rest = value.partition(" ")
    if scheme.lower() == "bearer":
        return rest.strip()
    return value


OPEN_PATHS = ("/", "/metrics", "/v1/signing-keys")


def is_open_route(method: str, path: str) -> bool:
    """Whether the route needs no client key: the health check, `/metrics` (which asks for its
    own key, AIPROXY_METRICS_KEY: service.edge.routes.metrics) and the public keys answers are
    signed with (`/v1/signing-keys`). Their bodies are never read (service.edge.pipeline,
    service.server.worker)."""
    return path in OPEN_PATHS and method in ("GET", "HEAD")


class ClientGate:
    """Authenticates each request (`service.edge.pipeline` asks before anything else)."""

    def __init__(self, keys: ClientKeys, hasher: EndUserHasher | None = None) -> None:
        self.keys = keys
        self.hasher = hasher

    def caller(self, method: str, path: str, environ: dict) -> tuple[Client | None, EndUser | None]:
        """The client of the request and, when it names one, its end user: from an end-user token
        (`Authorization: Bearer <JWT>`), or from `X-AIProxy-End-User` on a client-key request of a
        client that trusts it. Raises as `authenticate` does; a token that is not valid is a 401
        saying why, and a client key sent from a browser (an `Origin` header) is a 403."""
        store = self._store_for(method, path)
        if store is None:
            return None, None
        key = presented_key(environ.get("HTTP_AUTHORIZATION", ""))
        if store.issues_tokens and self.hasher is not None and looks_like_token(key):
            return self._token_caller(store, key)
        client = self._client_of(store, key)
        if environ.get("HTTP_ORIGIN"):
            log.info("Refused client %s's key sent from a browser", client.name)
            raise ProxyError(FROM_A_BROWSER_MESSAGE, status=403, code="client_key_from_browser")
        named = environ.get("HTTP_X_AIPROXY_END_USER")
        if named and client.access.trust_end_user_header and self.hasher is not None:
            end_user_id = header_end_user(named)
            if end_user_id is not None:
                return client, EndUser(self.hasher(end_user_id), client.access.end_user_limits)
        return client, None

    def _token_caller(self, store: KeyStore, token: str) -> tuple[Client, EndUser]:
        assert self.hasher is not None
        try:
            client, claims = store.verify_token(token, time.time())
        except InvalidToken as error:
            log.info("Refused an end-user token: %s", error)
            raise Unauthenticated(
                f"The end-user token is not valid: {error}.",
                code="invalid_end_user_token",
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            ) from None
        policy = client.access.tokens
        return client, EndUser(
            self.hasher(claims.end_user),
            client.access.end_user_limits,
            attributes=claims.attributes,
            blocked_models=claims.blocked_models,
            token_id=claims.token_id,
            expires=claims.expires,
            reject_replay=policy is not None and policy.reject_replays,
            sign=claims.sign,
        )

    def authenticate(self, method: str, path: str, authorization: str) -> Client | None:
        """The client whose key the request carries; None when none is needed (`GET /`, or the
        proxy running open). Raises Unauthenticated (401) or Unavailable (503, store lost)."""
        store = self._store_for(method, path)
        return None if store is None else self._client_of(store, presented_key(authorization))

    def _store_for(self, method: str, path: str) -> KeyStore | None:
        """The key store the request is checked against; None when none is needed."""
        if is_open_route(method, path):
            return None
        store = self.keys.current()
        if store is None:
            return None  # running open (start-up said so)
        if self.keys.lost:
            raise Unavailable("Client authentication is unavailable; try again later.")
        return store

    @staticmethod
    def _client_of(store: KeyStore, key: str) -> Client:
        client = store.authenticate(key) if 0 < len(key) <= _MAX_KEY_LENGTH else None
        if client is None:
            # The reason is for operators only; the client gets one answer for every case.
            reason = "no key" if not key else "unknown key"
            log.info("Refused a request without a valid client key (%s)", reason)
            raise Unauthenticated(UNAUTHORIZED_MESSAGE, headers={"WWW-Authenticate": "Bearer"})
        return client


def default_limits(settings: Settings) -> limits.Limits:
    """The limits of a client whose key store entry sets none (AIPROXY_DEFAULT_*)."""
    return limits.Limits(settings.default_rpm, settings.default_max_concurrent)
