"""Every error the proxy answers with, in one hierarchy, and the one place that turns any of them
into the OpenAI error shape `{"error": {"message", "type", "param", "code"}}`.

    ProxyError                      an answer other than success; carries its status
    ├── RequestRejected             4xx: the request cannot be served as sent (400, 404, 405, 408, 413...)
    ├── Unauthenticated             401: no valid client key
    ├── LimitExceeded               429: over a client limit or budget (Retry-After)
    ├── Unavailable                 503: a part of the proxy itself is missing (key store, limits store)
    │   └── ServerStopping              503: the server is shutting down and cut the request
    └── ProviderError               a provider gave no usable answer
        ├── ProviderKeyMissing          503: no key configured for it, nor one sent by the caller
        ├── ProviderAuthFailed          502: it refused the proxy's own key or credentials
        ├── ProviderUnreachable         502: no connection, or one broken before the answer
        ├── ProviderTimeout             504: too slow to connect or to answer
        ├── ProviderBadAnswer           502: an answer the proxy cannot use
        └── ProviderStatusError         its own 4xx/5xx answer, body kept
            └── ProviderThrottled           429 (Retry-After)

Every provider (the OpenAI-compatible upstreams, Amazon Bedrock) raises these, and every route,
the assessment included, answers them through `error_answer()`. A provider's own 4xx/5xx is
relayed as it came (status and OpenAI-shaped body) when the proxy relayed the caller's request;
when the proxy composed the request itself (grading), the caller gets 400 for a refusal, 429 for
throttling and 502 for a failure, each naming the provider's message (docs/assessment.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from service.core import request_state
from service.core.responses import ClientResponse, json_bytes

# The `type` OpenAI uses for each status; others fall back by class of status.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout_error",
}
# How much of a value an error message quotes: a message is for a person, not a copy of the input.
MAX_QUOTED = 200


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def error_body(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | int | None = None,
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type or error_type(status), "param": param, "code": code}}


def quoted(value: str, limit: int = MAX_QUOTED) -> str:
    """`value` for an error message: repr'd, and cut to `limit` characters with a note of the rest."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value) - limit:,} more characters)"


class ProxyError(Exception):
    """An answer other than success. Subclasses set `status` and `code`; an instance may override them."""

    status = 500
    code: str | None = None
    kind = "error"  # what went wrong, in one word for usage records and metrics

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if kind is not None:
            self.kind = kind
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_body(self.status, self.message, param=self.param, code=self.code)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, message={self.message!r})"


class RequestRejected(ProxyError):
    status = 400
    kind = "rejected"


class Unauthenticated(ProxyError):
    status = 401
    code = "invalid_api_key"
    kind = "unauthenticated"


class LimitExceeded(ProxyError):
    """429 with `Retry-After` (whole seconds, at least 1)."""

    status = 429
    code = "rate_limit_exceeded"
    kind = "limited"

    def __init__(self, message: str, retry_after: int, *, code: str | None = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, code=code, headers={"Retry-After": str(self.retry_after)})


class Unavailable(ProxyError):
    status = 503
    kind = "unavailable"


class ServerStopping(Unavailable):
    """The server is shutting down and its graceful time ran out before this request was answered
    (`service.core.shutdown`): the client may send it again, to another server."""

    code = "server_shutting_down"
    kind = "shutdown"

    def __init__(
        self,
        message: str = "The server is shutting down and stopped this request before its answer; "
        "send the request again.",
    ) -> None:
        super().__init__(message)


# --- providers -----------------------------------------------------------------------------------


class ProviderError(ProxyError):
    """A provider gave no usable answer. `provider` names it (an upstream, `bedrock`)."""

    status = 502
    code = "upstream_error"
    kind = "provider"

    def __init__(self, message: str, *, provider: str = "", **options: Any) -> None:
        super().__init__(message, **options)
        self.provider = provider

    @property
    def worth_another_deployment(self) -> bool:
        """Whether another deployment of the same model may well succeed (a fallback): the
        provider is down, slow, throttled or misconfigured, not refusing the request itself."""
        return True


class ProviderKeyMissing(ProviderError):
    status = 503
    code = "provider_key_missing"
    kind = "no_key"


class ProviderAuthFailed(ProviderError):
    """The provider refused the proxy's own key or credentials: the operators' problem, not the caller's."""

    status = 502
    code = "provider_auth_failed"
    kind = "auth_failed"


class ProviderUnreachable(ProviderError):
    status = 502
    code = "upstream_unreachable"
    kind = "unreachable"


class ProviderTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"
    kind = "timeout"


class ProviderBadAnswer(ProviderError):
    status = 502
    code = "upstream_error"
    kind = "http"


class ProviderStatusError(ProviderError):
    """The provider answered with its own error status.

    `relayed`: the request was the caller's, relayed; the caller then gets the provider's status
    and (OpenAI-shaped) body as they came. Otherwise the proxy composed the request and answers
    400 for a refusal and 502 for a failure, quoting the provider's message.
    """

    kind = "http"

    def __init__(
        self,
        message: str,
        *,
        provider_status: int,
        body: bytes = b"",
        relayed: bool = True,
        provider: str = "",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        kind: str | None = None,
    ) -> None:
        self.provider_status = provider_status
        self.provider_body = body
        self.relayed = relayed
        if relayed:
            status = provider_status
        elif provider_status == 429:
            status, message = 429, f"The model's provider is rate limiting: {message}"
        elif 400 <= provider_status < 500:
            status, message = 400, f"The model's provider rejected the request: {message}"
        else:
            status, message = 502, f"The model's provider failed (HTTP {provider_status}): {message}"
        super().__init__(message, status=status, provider=provider, code=code, headers=headers, kind=kind)

    @property
    def worth_another_deployment(self) -> bool:
        return self.provider_status == 429 or self.provider_status >= 500

    def relayed_body(self) -> bytes | None:
        """The provider's own error body, when it is the one to relay (OpenAI-shaped)."""
        if self.relayed and self.provider_body and error_object(self.provider_body) is not None:
            return self.provider_body
        return None


class ProviderThrottled(ProviderStatusError):
    """429 from the provider; `retry_after` is what it asked for (seconds), if anything."""

    def __init__(self, message: str, *, retry_after: float | None = None, **options: Any) -> None:
        options.setdefault("provider_status", 429)
        super().__init__(message, **options)
        self.retry_after = retry_after


# --- the one place errors become answers -----------------------------------------------------------


def error_answer(error: ProxyError) -> ClientResponse:
    """The answer a client gets for `error`: JSON in the OpenAI shape, with the error's headers."""
    state = request_state.current()
    if state is not None:
        state.error_kind = error.kind  # the request's metrics count errors by kind
    body = error.relayed_body() if isinstance(error, ProviderStatusError) else None
    if body is None:
        body = json_bytes(error.body())
    return ClientResponse.of_bytes(error.status, body, "application/json", headers=error.headers)


def error_object(body: bytes) -> dict[str, Any] | None:
    """The `error` object of an OpenAI-shaped error body, or None when the body is not one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) else None


SERVER_ERROR_MESSAGE = "The server failed to handle this request; it has been reported."
REQUEST_TOO_LARGE_MESSAGE = "The request body is too large."
