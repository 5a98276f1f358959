"""Google Vertex AI: its OpenAI-compatible endpoint, reached with an OAuth access token.

A Vertex upstream is an `OpenAICompatible` whose key is an access token: `AccessTokens` turns a
service account's JSON key (a secret, read as every secret is) into a token with Google's own
auth library (google-auth), keeps it for every request of the process and fetches a new one
shortly before it expires. Only one request fetches at a time; the others wait for its token.

A token endpoint that refuses the service account (a deleted key, a disabled account) is the
operators' problem: `ProviderAuthFailed`, a 502 `provider_auth_failed`, never the caller's 401.
The token is never logged; what the upstream echoes of it is blanked out like any provider key.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from service.core.errors import ProviderAuthFailed, ProviderKeyMissing, ProviderUnreachable

log = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
# A token is replaced this long before it expires (Google's last an hour), or halfway through its
# life when that is shorter, so no request goes out with one about to lapse.
REFRESH_MARGIN = 300.0
TOKEN_TIMEOUT = 10.0  # seconds to wait for Google's token endpoint


class _Transport:
    """google-auth's transport interface (`google.auth.transport.Request`) over one pooled
    requests session, with a bounded timeout: a slow token endpoint must not hold a request long."""

    def __init__(self) -> None:
        import requests
        from google.auth.transport.requests import Request

        self._request = Request(session=requests.Session())

    def __call__(
        self, url: str, method: str = "GET", body: Any = None, headers: Any = None, **kwargs: Any
    ) -> Any:
        kwargs["timeout"] = min(kwargs.get("timeout") or TOKEN_TIMEOUT, TOKEN_TIMEOUT)
        return self._request(url, method=method, body=body, headers=headers, **kwargs)


class AccessToken:
    """The access token of one service account, whose JSON key `read_key()` returns (None: unset).
    Safe to share between threads and greenlets."""

    def __init__(
        self,
        read_key: Callable[[], str | None],
        *,
        provider: str,
        where: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._read_key = read_key
        self._provider = provider
        self._where = where  # where the key is set, for the message when it is missing
        self._clock = clock
        self._lock = threading.Lock()
        self._key: str | None = None  # the JSON key the credentials were made from
        self._credentials: Any = None
        self._token: str | None = None
        self._renew_at = 0.0
        self._transport: _Transport | None = None

    def __call__(self) -> str:
        """A token valid for a while yet; ProviderError when none can be had."""
        key = self._read_key()
        if not key:
            raise ProviderKeyMissing(
                f"No service account key is configured for the upstream {self._provider!r}; "
                f"set {self._where}.",
                provider=self._provider,
            )
        token = self._token
        if token is not None and key == self._key and self._clock() < self._renew_at:
            return token
        with self._lock:
            # Another request may have fetched one while this one waited.
            if self._token is not None and key == self._key and self._clock() < self._renew_at:
                return self._token
            return self._fetch(key)

    def _fetch(self, key: str) -> str:
        from google.auth import exceptions

        if key != self._key or self._credentials is None:
            self._credentials = self._credentials_of(key)
            self._key = key
        if self._transport is None:
            self._transport = _Transport()
        try:
            self._credentials.refresh(self._transport)
        except exceptions.RefreshError as error:
            # The endpoint's answer names the reason (`invalid_grant: ...`), never the key.
            reason = str(error.args[0]) if error.args else type(error).__name__
            log.error("Google refused the service account of upstream %s: %s", self._provider, reason[:200])
            raise ProviderAuthFailed(
                f"Google refused the service account of the upstream {self._provider!r}: "
                "the proxy's credentials need attention.",
                provider=self._provider,
            ) from None
        except exceptions.TransportError:
            raise ProviderUnreachable(
                f"Could not reach Google's token endpoint for the upstream {self._provider!r}.",
                provider=self._provider,
            ) from None
        token: str = self._credentials.token  # set by a refresh that succeeded
        now = self._clock()
        expiry = self._credentials.expiry  # naive UTC (google-auth's convention), or None
        lifetime = 3600.0 if expiry is None else expiry.replace(tzinfo=datetime.UTC).timestamp() - now
        self._renew_at = now + max(0.0, lifetime - min(REFRESH_MARGIN, lifetime / 2))
        self._token = token
        return token

    def _credentials_of(self, key: str) -> Any:
        from google.oauth2 import service_account

        try:
            info = json.loads(key)
            # google-auth ships py.typed but leaves this classmethod unannotated.
            return service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=list(SCOPES)
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            # What is wrong, never the content: it holds a private key.
            raise ProviderKeyMissing(
                f"The service account key of the upstream {self._provider!r} ({self._where}) is not a "
                "Google service account's JSON key.",
                provider=self._provider,
            ) from None


class AccessTokens:
    """One `AccessToken` per credential (secret) name, made on first use: an upstream's own and
    those clients name in the key store (`upstream_credentials`)."""

    def __init__(self, make: Callable[[str], AccessToken]) -> None:
        self._make = make
        self._tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()

    def token(self, credential: str) -> str:
        source = self._tokens.get(credential)
        if source is None:
            with self._lock:
                source = self._tokens.setdefault(credential, self._make(credential))
        return source()
