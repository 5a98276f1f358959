"""What an upstream's failure becomes: its error answer or a broken connection, as the
`service.core.errors.ProviderError` the routes answer with (the provider key blanked out)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from service.core.errors import (
    ProviderAuthFailed,
    ProviderError,
    ProviderStatusError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnreachable,
)
from service.gateway.providers.http_pool import ConnectFailed, ConnectTimeout, ReadTimeout, TransportError
from service.gateway.providers.openai.headers import parse_retry_after, relayed_headers
from service.gateway.redaction import redactor

log = logging.getLogger(__name__)


def upstream_message(body: bytes | None, status: int) -> str:
    """The human-readable message inside an upstream error body (OpenAI shape or otherwise)."""
    default = f"The upstream answered HTTP {status}."
    if not body:
        return default
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        return text[:500] if text and not text.startswith("<") else default
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, str):
            return error[:500]
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                message = error.get(key)
                if isinstance(message, str) and message:
                    return message[:500]
    return default


def status_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    data: bytes,
    key: str,
    caller_key: str | None,
    relayed: bool,
) -> ProviderError:
    """The error for an upstream's 4xx/5xx answer (`data`, its decoded body) to a request sent
    with `key`; `caller_key` when the caller brought it, `relayed` when the client's own request."""
    redacting = redactor(key) if key else None
    data = data or b""
    data = redacting.bytes(data) if redacting else data
    message = upstream_message(data, status)
    if status == 401 and not caller_key:
        # The upstream refused the key this proxy holds. Its message may quote part of the key,
        # and SDKs would blame the caller's own key for a 401: neither reaches the client.
        log.error("The upstream %s refused the configured provider key (HTTP 401)", provider)
        return ProviderAuthFailed(
            f"The model's provider refused this proxy's credentials (upstream '{provider}', HTTP 401); "
            "the proxy's operators must fix its provider key.",
            provider=provider,
        )
    if status == 403 and not caller_key and not relayed:
        return ProviderAuthFailed(
            f"The model's provider refused this proxy's credentials: {message}", provider=provider
        )
    options: dict[str, Any] = {
        "provider_status": status,
        "body": data,
        "relayed": relayed,
        "provider": provider,
        "headers": dict(relayed_headers(headers, key)),
    }
    if status == 429:
        return ProviderThrottled(message, retry_after=parse_retry_after(headers), **options)
    return ProviderStatusError(message, **options)


def connection_error(
    provider: str, error: TransportError, *, connect_timeout: float, timeout: float
) -> ProviderError:
    """The error for a request that got no complete answer."""
    if isinstance(error, ConnectTimeout):
        return ProviderTimeout(
            f"Could not connect to the upstream within {connect_timeout:g} seconds.", provider=provider
        )
    if isinstance(error, ReadTimeout):
        return ProviderTimeout(f"The upstream did not answer within {timeout:g} seconds.", provider=provider)
    if isinstance(error, ConnectFailed):
        return ProviderUnreachable(f"The upstream could not be reached ({error.reason}).", provider=provider)
    return ProviderUnreachable(f"The upstream broke the connection ({error.reason}).", provider=provider)
