"""Client authentication: the gate every request passes, and the key store kept current.

The key store's format and parsing are `service.governance.key_store`. It is read through the
app's SecretStore (`ClientKeys`), so a changed secret takes effect within AIPROXY_SECRETS_TTL
seconds; a store that goes missing or turns invalid keeps the last valid one in force.

Every route except `GET /` (the load balancer's health check), `GET /metrics` (its own key) and
`GET /v1/signing-keys` needs a key or an end-user token when a store is configured; the request
pipeline (`service.edge.pipeline`) asks `ClientGate` before anything else.
Without a store the proxy runs open, which is refused in `test` and `production`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from service.config.secrets import CLIENT_API_KEYS, SecretStore, env_variable
from service.config.settings import Settings
from service.core.errors import ProxyError, Unauthenticated, Unavailable
from service.governance import limits
from service.governance.end_user_tokens import (
    InvalidToken,
    looks_like_token,
)
from service.governance.end_users import (
    EndUser,
    EndUserHasher,
    header_end_user,
)
from service.governance.key_store import (
    Client,
    KeyStore,
    KeyStoreError,
    parse_key_store,
)
from service.governance.open_routes import is_open_route

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger(__name__)

# Environment types where running without client authentication is refused.
AUTH_REQUIRED_IN = ("test", "production")
_MAX_KEY_LENGTH = 1024  # longer Authorization values are refused without hashing them

UNAUTHORIZED_MESSAGE = (
    "Missing or invalid client key. Send the key the proxy's operators gave you as "
    "'Authorization: Bearer <key>'."
)
FROM_A_BROWSER_MESSAGE = (
    "A client key is never sent from a browser (this request has an Origin header); a browser "
    "sends an end-user token its application issued (docs/end-users.md)."
)


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
        self._store, self._raw = store, raw  # the store first: `current` reads `_raw` unlocked
        log.info("Client key store loaded from %s: %d client(s)", source, len(store.clients))
        return store

    def current(self) -> KeyStore | None:
        raw = self._secrets.get(CLIENT_API_KEYS)
        if raw == self._raw and not self._lost:
            return self._store  # unchanged (every request but the first after a change): no lock
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
            self._store, self._lost, self._raw = store, False, raw
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


class ClientGate:
    """Authenticates each request (`service.edge.pipeline` asks before anything else)."""

    def __init__(self, keys: ClientKeys, hasher: EndUserHasher | None = None) -> None:
        self.keys = keys
        self.hasher = hasher

    def caller(
        self, method: str, path: str, environ: WSGIEnvironment
    ) -> tuple[Client | None, EndUser | None]:
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
            region=claims.region,
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
