"""End-user tokens: short-lived JSON Web Tokens a client's own service signs for one end user.

A client's key store entry may declare that it issues tokens (`end_user_tokens`, docs/end-users.md):
its public keys (PEM, or `{"<kid>": "<PEM>"}`) or a `jwks_url` (fetched, cached), the algorithms
it signs with, an `audience`, the longest lifetime it may give a token (`max_lifetime_s`), whether
a token id may be used once only (`replay: "reject"`) and, in `claims`, the names its tokens give
the standard claims, so an issuer's existing tokens work unchanged.

Verification is PyJWT's, with cryptography's key objects: the algorithms passed to it are those
the entry lists that fit the key's type (an RSA key: RS*/PS*; an EC key: ES*; an Ed25519 key:
EdDSA), so `none` and HMAC with a public key can never be chosen by a token. The times are
checked here, whatever the claims are called: expired (beyond `LEEWAY_SECONDS`), issued in the
future beyond it, or a lifetime over `max_lifetime_s`. Any failure is `InvalidToken` (a 401).
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from service.config.model_aliases import REGION

log = logging.getLogger(__name__)

LEEWAY_SECONDS = 30  # clock skew allowed between the issuer and the proxy
DEFAULT_MAX_LIFETIME = 300
_MAX_LIFETIME = 86400
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}
ALGORITHMS = (*_RSA, *_EC, "EdDSA")  # asymmetric only: never `none`, never HMAC
POLICY_FIELDS = ("public_keys", "jwks_url", "algorithms", "audience", "max_lifetime_s", "replay", "claims")
# The claims a token carries, under these standard names unless `claims` maps them.
STANDARD_CLAIMS = {
    "end_user": "sub",
    "expires": "exp",
    "issued": "iat",
    "token_id": "jti",
    "sign": "sign",
}
# Claims read only when the issuer names them in `claims`: models the end user may not use, and the
# end user's country (ISO 3166-1 alpha-2), for routing by region.
OPTIONAL_CLAIMS = ("blocked_models", "region")
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_ATTRIBUTES = 8
MAX_VALUE = 100  # characters of an attribute value kept
MAX_END_USER = 256  # characters of an end user id accepted


class InvalidToken(Exception):
    """Why a token is refused, in a few words safe to show its bearer."""


@dataclass(frozen=True)
class ClaimNames:
    """The claim names of one issuer's tokens. New claims (a region, say) are one more entry of
    STANDARD_CLAIMS or OPTIONAL_CLAIMS, read by `Claims`."""

    names: Mapping[str, str]  # every standard claim's, and the optional claims the issuer names
    attributes: tuple[str, ...] = ()

    def __getitem__(self, what: str) -> str:
        return self.names[what]

    def optional(self, what: str) -> str | None:
        """The name of an optional claim, None when the issuer names none."""
        return self.names.get(what)


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    end_user: str
    expires: float
    token_id: str | None
    attributes: Mapping[str, str]
    blocked_models: frozenset[str]
    sign: bool
    issuer: str | None = None  # `iss`, when the token has one
    region: str | None = None  # the country the issuer says the end user is in (`claims.region`)


def _key_algorithms(key: Any, algorithms: tuple[str, ...]) -> tuple[str, ...]:
    """The listed algorithms that can verify with `key` (its type decides, never the token)."""
    if isinstance(key, rsa.RSAPublicKey):
        return tuple(a for a in algorithms if a in _RSA)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return tuple(a for a in algorithms if _EC.get(a) == key.curve.name)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return tuple(a for a in algorithms if a == "EdDSA")
    return ()


@dataclass(frozen=True)
class VerifyingKey:
    kid: str | None
    key: Any  # a cryptography public key object
    algorithms: tuple[str, ...]


class TokenPolicy:
    """One client's `end_user_tokens`, parsed and checked at load."""

    def __init__(
        self,
        *,
        keys: tuple[VerifyingKey, ...],
        jwks_url: str | None,
        algorithms: tuple[str, ...],
        audience: str | None,
        max_lifetime: int,
        reject_replays: bool,
        claims: ClaimNames,
    ) -> None:
        self.keys = keys
        self.algorithms = algorithms
        self.audience = audience
        self.max_lifetime = max_lifetime
        self.reject_replays = reject_replays
        self.claims = claims
        self.jwks_url = jwks_url
        # Fetched the first time a token needs it, then cached (keys for `lifespan` seconds).
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5) if jwks_url else None

    def candidates(self, kid: str | None, algorithm: str, token: str) -> list[VerifyingKey]:
        """The keys that may have signed `token`: the one of its `kid`, else every key of its algorithm."""
        if self._jwks is not None:
            try:
                found = self._jwks.get_signing_key_from_jwt(token)
            except jwt.PyJWKClientConnectionError as error:
                log.warning("Could not fetch the end-user token keys from %s (%s)", self.jwks_url, error)
                raise InvalidToken("the issuer's keys could not be fetched") from None
            except (jwt.PyJWKClientError, jwt.InvalidTokenError):
                raise InvalidToken("no key of its issuer has this kid") from None
            return [VerifyingKey(kid, found.key, _key_algorithms(found.key, self.algorithms))]
        if kid is not None:
            return [key for key in self.keys if key.kid == kid]
        return [key for key in self.keys if algorithm in key.algorithms]

    def verify(self, token: str, keys: list[VerifyingKey], now: float) -> Claims:
        payload = None
        for key in keys:
            try:
                payload = jwt.decode(
                    token,
                    key.key,
                    algorithms=list(key.algorithms),
                    audience=self.audience,
                    leeway=LEEWAY_SECONDS,
                    # Times are checked below under the issuer's claim names.
                    options={"verify_exp": False, "verify_iat": False, "require": []},
                )
                break
            except jwt.InvalidAlgorithmError:
                raise InvalidToken("its algorithm is not one its issuer signs with") from None
            except jwt.InvalidAudienceError:
                raise InvalidToken("it is meant for another audience") from None
            except jwt.MissingRequiredClaimError as error:
                raise InvalidToken(f"it has no {error.claim!r} claim") from None
            except jwt.ImmatureSignatureError:
                raise InvalidToken("it is not valid yet") from None
            except jwt.InvalidSignatureError:
                continue
            except jwt.InvalidTokenError:
                raise InvalidToken("it is malformed") from None
        if payload is None:
            raise InvalidToken("its signature does not verify with its issuer's keys")
        return self._claims(payload, now)

    def _claims(self, payload: dict[str, Any], now: float) -> Claims:
        names = self.claims
        expires = _number(payload.get(names["expires"]))
        if expires is None:
            raise InvalidToken(f"it has no expiry ({names['expires']!r})")
        if now > expires + LEEWAY_SECONDS:
            raise InvalidToken("it has expired")
        issued = _number(payload.get(names["issued"]))
        if issued is not None and issued > now + LEEWAY_SECONDS:
            raise InvalidToken("it was issued in the future")
        if expires - (issued if issued is not None else now) > self.max_lifetime:
            raise InvalidToken(f"its lifetime is over {self.max_lifetime} seconds")
        end_user = _text(payload.get(names["end_user"]))
        if not end_user or len(end_user) > MAX_END_USER:
            raise InvalidToken(f"it names no end user ({names['end_user']!r})")
        token_id = _text(payload.get(names["token_id"]))
        if self.reject_replays and not token_id:
            raise InvalidToken(f"it has no token id ({names['token_id']!r})")
        attributes = {}
        for name in names.attributes:
            value = _text(payload.get(name))
            if value:
                attributes[name] = value[:MAX_VALUE]
        blocked: frozenset[str] = frozenset()
        blocked_claim, region_claim = names.optional("blocked_models"), names.optional("region")
        if blocked_claim:
            listed = payload.get(blocked_claim)
            if isinstance(listed, list):
                blocked = frozenset(model for model in listed if isinstance(model, str))
        region = _text(payload.get(region_claim)) if region_claim else None
        return Claims(
            region=_region(region),
            end_user=end_user,
            expires=expires,
            token_id=token_id,
            attributes=attributes,
            blocked_models=blocked,
            sign=payload.get(names["sign"]) is True,
            issuer=payload.get("iss") if isinstance(payload.get("iss"), str) else None,
        )


def _region(value: str | None) -> str | None:
    """A country code (upper-cased), or None: a claim that is not one counts as no region."""
    code = value.strip().upper() if value else ""
    return code if REGION.fullmatch(code) else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def looks_like_token(value: str) -> bool:
    """Three base64url parts: a JSON Web Token, never a client key (`aip_...`)."""
    return value.count(".") == 2 and not value.startswith("aip_")


def _unverified_part(token: str, number: int) -> dict[str, Any]:
    """One JSON part of the token (0: header, 1: claims), decoded only: PyJWT's own reader decodes
    the whole token, ten times the time. Nothing read here is trusted before PyJWT verifies it."""
    encoded = token.split(".", 2)[number]
    try:
        value = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (ValueError, RecursionError):
        raise InvalidToken("it is malformed") from None
    if not isinstance(value, dict):
        raise InvalidToken("it is malformed")
    return value


def token_header(token: str) -> tuple[str | None, str | None]:
    """The token's (kid, alg), read before anything is verified, to find its issuer's key."""
    header = _unverified_part(token, 0)
    kid, algorithm = header.get("kid"), header.get("alg")
    return kid if isinstance(kid, str) else None, algorithm if isinstance(algorithm, str) else None


def unverified_issuer(token: str) -> str | None:
    """The token's `iss`, to find its client when no client has its kid."""
    issuer = _unverified_part(token, 1).get("iss")
    return issuer if isinstance(issuer, str) else None


def parse_policy(value: Any, where: str) -> TokenPolicy:
    """An entry's `end_user_tokens`; ValueError naming the field that is wrong."""
    field = f'{where}: "end_user_tokens'
    if not isinstance(value, dict):
        raise ValueError(f'{field}" must be an object ({", ".join(POLICY_FIELDS)})')
    unknown = [name for name in value if name not in POLICY_FIELDS]
    if unknown:
        raise ValueError(f'{field}" has unknown field(s); allowed: {", ".join(POLICY_FIELDS)}')
    algorithms = value.get("algorithms", ["RS256", "ES256", "EdDSA"])
    if not isinstance(algorithms, list) or not algorithms or any(a not in ALGORITHMS for a in algorithms):
        raise ValueError(f'{field}.algorithms" must list some of {", ".join(ALGORITHMS)} (never none or HS*)')
    algorithms = tuple(algorithms)
    keys = _parse_keys(value.get("public_keys"), algorithms, field)
    jwks_url = value.get("jwks_url")
    if jwks_url is not None:
        parts = urlsplit(jwks_url) if isinstance(jwks_url, str) else None
        if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError(f'{field}.jwks_url" must be an https URL')
    if bool(keys) == bool(jwks_url):
        raise ValueError(f'{field}" needs "public_keys" or "jwks_url" (one of them)')
    audience = value.get("audience")
    if audience is not None and (not isinstance(audience, str) or not audience):
        raise ValueError(f'{field}.audience" must be a string')
    lifetime = value.get("max_lifetime_s", DEFAULT_MAX_LIFETIME)
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or not 1 <= lifetime <= _MAX_LIFETIME:
        raise ValueError(f'{field}.max_lifetime_s" must be whole seconds from 1 to {_MAX_LIFETIME}')
    replay = value.get("replay", "allow")
    if replay not in ("reject", "allow"):
        raise ValueError(f'{field}.replay" must be "reject" or "allow"')
    return TokenPolicy(
        keys=keys,
        jwks_url=jwks_url,
        algorithms=algorithms,
        audience=audience,
        max_lifetime=lifetime,
        reject_replays=replay == "reject",
        claims=_parse_claims(value.get("claims", {}), field),
    )


def _parse_keys(value: Any, algorithms: tuple[str, ...], field: str) -> tuple[VerifyingKey, ...]:
    if value is None:
        return ()
    if isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = [(None, pem) for pem in value] if isinstance(value, list) else []
    if not pairs or any(not isinstance(pem, str) or (kid is not None and not kid) for kid, pem in pairs):
        raise ValueError(f'{field}.public_keys" must be a list of PEM public keys, or {{"<kid>": "<PEM>"}}')
    keys = []
    for number, (kid, pem) in enumerate(pairs):
        try:
            key = load_pem_public_key(pem.encode())
        except (ValueError, TypeError):
            raise ValueError(f'{field}.public_keys" key {number} is not a PEM public key') from None
        fits = _key_algorithms(key, algorithms)
        if not fits:
            raise ValueError(f'{field}.public_keys" key {number} fits none of the listed algorithms')
        keys.append(VerifyingKey(kid, key, fits))
    return tuple(keys)


def _parse_claims(value: Any, field: str) -> ClaimNames:
    if not isinstance(value, dict):
        raise ValueError(f'{field}.claims" must be an object of claim names')
    allowed = (*STANDARD_CLAIMS, *OPTIONAL_CLAIMS, "attributes")
    unknown = [name for name in value if name not in allowed]
    if unknown:
        raise ValueError(f'{field}.claims" has unknown field(s); allowed: {", ".join(allowed)}')
    names: dict[str, str] = dict(STANDARD_CLAIMS)
    for what, name in value.items():
        if what == "attributes":
            continue
        if not isinstance(name, str) or not _ATTRIBUTE_NAME.match(name):
            raise ValueError(f'{field}.claims.{what}" must be a claim name')
        names[what] = name
    attributes = value.get("attributes", [])
    if (
        not isinstance(attributes, list)
        or len(attributes) > MAX_ATTRIBUTES
        or not all(isinstance(a, str) and _ATTRIBUTE_NAME.match(a) for a in attributes)
    ):
        raise ValueError(f'{field}.claims.attributes" must list up to {MAX_ATTRIBUTES} claim names')
    return ClaimNames(names, tuple(attributes))
