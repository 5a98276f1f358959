"""Client authentication: the key store, key lookup, and the gate every request passes.

The key store is the JSON secret `client_api_keys` (or AIPROXY_CLIENT_KEYS):

    {"<client>": {"keys": ["<sha256 hex of a key>", ...], "rpm": 600, "max_concurrent": 50,
                  "tpm": 200000, "budget_usd_per_day": 20, "budget_usd_per_month": 300}}

(every field but `keys` optional; `service.governance.limits` says what each limit does).
`"upstream_credentials": {"vertex": "vertex_sa_tutor", "openai": "openai_key_chat_lab"}` names,
per upstream (`openai` is the default one), the secret holding the credential the client's
requests use there instead of the upstream's own: a product that brings its own provider account
pays with it, and usage records say so (service.gateway.credentials).

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
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from service.config.secrets import CLIENT_API_KEYS, SecretStore, env_variable
from service.config.setting import SettingsError
from service.config.settings import Settings
from service.core import request_state
from service.core.errors import Unauthenticated, Unavailable
from service.governance import limits

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
    "upstream_credentials",
)
# A credential is a secret's name: its environment variable is the name upper-cased.
CREDENTIAL_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_MAX_LIMIT = 100000
_MAX_TPM = 1_000_000_000
_MAX_BUDGET = 10_000_000.0
_MAX_KEY_LENGTH = 1024  # longer Authorization values are refused without hashing them

# One message for a missing, malformed or wrong key: the answer must not help guess which.
UNAUTHORIZED_MESSAGE = (
    "Missing or invalid client key. Send the key the proxy's operators gave you as "
    "'Authorization: Bearer <key>'."
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
        # The upstreams a client may name its own credential for (`openai`: the default upstream).
        self._upstreams = {"openai", *settings.upstreams}
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
            store = parse_key_store(raw, self._default_limits, self._upstreams)
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
                store = parse_key_store(raw, self._default_limits, self._upstreams)
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


def is_open_route(method: str, path: str) -> bool:
    """Whether the route needs no client key: the health check and `/metrics` (which asks for its
    own key, AIPROXY_METRICS_KEY: service.edge.routes.metrics). Their bodies are never read
    (service.edge.pipeline, service.server.worker)."""
    return path in ("/", "/metrics") and method in ("GET", "HEAD")


class ClientGate:
    """Authenticates each request (`service.edge.pipeline` asks before anything else)."""

    def __init__(self, keys: ClientKeys) -> None:
        self.keys = keys

    def authenticate(self, method: str, path: str, authorization: str) -> Client | None:
        """The client whose key the request carries; None when none is needed (`GET /`, or the
        proxy running open). Raises Unauthenticated (401) or Unavailable (503, store lost)."""
        if is_open_route(method, path):
            return None
        store = self.keys.current()
        if store is None:
            return None  # running open (start-up said so)
        if self.keys.lost:
            raise Unavailable("Client authentication is unavailable; try again later.")
        key = presented_key(authorization)
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
