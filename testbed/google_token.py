"""A fake Google OAuth token endpoint: a real aiohttp server on 127.0.0.1, in a background thread,
that issues access tokens to service accounts as `https://oauth2.googleapis.com/token` does.

Usage in a test:

    from testbed.google_token import FakeGoogleToken
    from testbed.openai_upstream import FakeOpenAI

    with FakeGoogleToken(expires_in=3600) as google, FakeOpenAI(bearer=google.accepts) as vertex:
        key = google.service_account("tutor")   # a service account's JSON key (text), its token_uri here
        ...                                     # the proxy turns it into a token with google-auth
        google.fetches("tutor")                 # how many tokens that account was issued
        vertex.requests[-1].headers["authorization"]   # "Bearer <a token issued to some account>"
        google.owner("<token>")                 # which account a token was issued to
        google.refuse("tutor")                  # from now on: 400 invalid_grant, as for a deleted key

Each service account has its own RSA key (made with cryptography); the endpoint checks the signed
assertion (RFC 7523 JWT bearer grant: issuer, audience, signature) as Google does, so only a key it
made gets a token. `expires_in` is what each token's answer says, and `accepts(token)` holds only
while a token has not expired.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testbed.aiohttp_server import FakeServer

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCE = "https://oauth2.googleapis.com/token"  # what a grant is addressed to, wherever it is sent
PROJECT = "fake-project"


@dataclass
class TokenRequest:
    account: str | None  # the service account that asked (None: not one of this fake's)
    granted: bool


class FakeGoogleToken(FakeServer[TokenRequest]):
    thread_name = "fake-google-token"

    def __init__(self, *, expires_in: int = 3600, port: int = 0) -> None:
        super().__init__(port=port)
        self.expires_in = expires_in
        self._keys: dict[str, Any] = {}  # account email -> RSA private key
        self._refused: set[str] = set()
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (account email, expiry)
        self._serial = itertools.count(1)

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @staticmethod
    def email(name: str) -> str:
        return f"{name}@{PROJECT}.iam.gserviceaccount.com"

    def service_account(self, name: str) -> str:
        """The JSON key of the service account `name` (made on first use), as Google's console gives it."""
        email = self.email(name)
        with self._lock:
            key = self._keys.get(email)
            if key is None:
                key = self._keys[email] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return json.dumps(
            {
                "type": "service_account",
                "project_id": PROJECT,
                "private_key_id": f"key-{name}",
                "private_key": pem,
                "client_email": email,
                "client_id": "1234567890",
                "token_uri": self.token_uri,
            }
        )

    def refuse(self, name: str) -> None:
        """From now on, the account `name` gets no token (400 invalid_grant)."""
        with self._lock:
            self._refused.add(self.email(name))

    def fetches(self, name: str) -> int:
        """How many tokens the account `name` was issued."""
        email = self.email(name)
        with self._lock:
            return sum(1 for r in self.requests if r.account == email and r.granted)

    def owner(self, token: str) -> str | None:
        """The name of the account `token` was issued to (expired or not), or None."""
        with self._lock:
            found = self._tokens.get(token)
        return found[0].partition("@")[0] if found else None

    def accepts(self, token: str) -> bool:
        """Whether `token` was issued here and has not expired (what Vertex checks)."""
        with self._lock:
            found = self._tokens.get(token)
        return found is not None and time.time() < found[1]

    # --- request handling ------------------------------------------------------------------

    async def _record(self, request: web.Request) -> TokenRequest | web.StreamResponse:
        if request.method != "POST" or request.path != "/token":
            return web.json_response({"error": "not_found"}, status=404)
        form = await request.post()
        if form.get("grant_type") != GRANT_TYPE:
            return _refusal("unsupported_grant_type", "Only the JWT bearer grant is faked.")
        assertion = str(form.get("assertion", ""))
        try:
            claims = jwt.decode(assertion, options={"verify_signature": False})
            email = claims.get("iss")
            key = self._keys.get(email)
            if key is None:
                return _refusal("invalid_grant", "Invalid JWT Signature.")
            jwt.decode(assertion, key.public_key(), algorithms=["RS256"], audience=AUDIENCE)
        except jwt.PyJWTError:
            return _refusal("invalid_grant", "Invalid JWT Signature.")
        return TokenRequest(email, email not in self._refused)

    async def _answer(self, request: web.Request, recorded: TokenRequest) -> web.StreamResponse:
        if not recorded.granted:
            return _refusal("invalid_grant", "Invalid grant: account not found")
        token = f"ya29.fake-{recorded.account.partition('@')[0]}-{next(self._serial)}"
        with self._lock:
            self._tokens[token] = (recorded.account, time.time() + self.expires_in)
        answer = {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        return web.json_response(answer)


def _refusal(error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=400)
