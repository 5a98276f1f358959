"""Browsers: CORS for the origins client entries list (`origins`, docs/end-users.md).

A browser holds an end-user token, never a client key (`service.governance.auth.ClientGate`
refuses a key sent with an `Origin` header). For an origin some client lists, the proxy answers
the preflight (`OPTIONS`) of any `/v1` route and adds `Access-Control-Allow-Origin` (that origin,
never `*`) to the answers; credentials mode is never allowed (a token travels in the
Authorization header, not in a cookie). Any other origin gets no CORS headers, and a token whose
client does not list the request's origin is refused (403 `origin_not_allowed`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.core.errors import ProxyError
from service.core.responses import ClientResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

PREFLIGHT_PREFIX = "/v1/"
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-Id, X-AIProxy-Sign"
EXPOSED_HEADERS = ", ".join(
    (
        "X-Request-Id",
        "X-AIProxy-Signature",
        "x-aiproxy-deployment",
        "Retry-After",
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    )
)
MAX_AGE_SECONDS = 600


def is_preflight(method: str, path: str, environ: WSGIEnvironment) -> bool:
    return (
        method == "OPTIONS"
        and path.startswith(PREFLIGHT_PREFIX)
        and bool(environ.get("HTTP_ORIGIN"))
        and bool(environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD"))
    )


def allowed_origin(origin: str, listed: frozenset[str]) -> str | None:
    """`origin` when it is listed (compared without case), else None."""
    return origin if origin.lower() in listed else None


def answer_headers(origin: str) -> list[tuple[str, str]]:
    """The CORS headers of an answer to a listed origin."""
    return [
        ("Access-Control-Allow-Origin", origin),
        ("Access-Control-Expose-Headers", EXPOSED_HEADERS),
        ("Vary", "Origin"),
    ]


def preflight(origin: str, listed: frozenset[str]) -> ClientResponse:
    """204 with what the browser may send, for a listed origin; else 403 without CORS headers."""
    if allowed_origin(origin, listed) is None:
        raise origin_refused()
    return ClientResponse(
        204,
        [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", ALLOWED_METHODS),
            ("Access-Control-Allow-Headers", ALLOWED_HEADERS),
            ("Access-Control-Max-Age", str(MAX_AGE_SECONDS)),
            ("Vary", "Origin"),
        ],
        [],
    )


def origin_refused() -> ProxyError:
    return ProxyError(
        "This origin may not call the proxy from a browser; its client's entry lists the origins "
        "it allows (docs/end-users.md).",
        status=403,
        code="origin_not_allowed",
    )
