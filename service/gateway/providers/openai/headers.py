"""The headers between a client and the upstream: what a request sends, which of the upstream's
answer headers a client gets, and the `Retry-After` the upstream asked for."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from service.gateway.redaction import redactor

# What an HTTP header value may hold (no CR, LF or other control characters).
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Upstream answer headers a client gets (lower case). Its request id is renamed so ours stays in
# X-Request-Id; everything else (cookies, organisation names, internal routing) stays here.
RELAYED_HEADERS = frozenset(
    {
        "retry-after",
        "retry-after-ms",
        "openai-processing-ms",
        "openai-version",
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    }
)
# The longest wait a client is told to come back after; an upstream asking for more is capped.
MAX_RETRY_AFTER = 600.0


def usable_key(key: str) -> bool:
    """Whether `key` can go into an Authorization header: one word of printable ASCII."""
    return key.isascii() and key.isprintable() and " " not in key


def request_headers(
    key: str, key_header: str, extra: Mapping[str, str] | None, configured: Mapping[str, str]
) -> dict[str, str]:
    """The headers of a request upstream: ours, the caller's `extra` that are safe to send, the
    upstream's `configured` ones and the provider key in `key_header`."""
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        # Plain bodies: usage, key redaction and event framing read them as they come.
        "Accept-Encoding": "identity",
        "User-Agent": "aiproxy",
    }
    if extra:
        # A value with CR or LF would let a caller add headers (or requests) of its own.
        headers.update((name, value) for name, value in extra.items() if _HEADER_VALUE.fullmatch(value))
    headers.update(configured)
    # Last: nothing a caller passes replaces it.
    if key_header.lower() == "authorization":
        headers["Authorization"] = f"Bearer {key}"
    else:
        headers[key_header] = key
    return headers


def relayed_headers(upstream_headers: Mapping[str, str], key: str | None) -> list[tuple[str, str]]:
    """The upstream's headers a client gets (RELAYED_HEADERS; its request id renamed), with the
    provider `key` blanked out of their values."""
    relayed = []
    for name, value in upstream_headers.items():
        if name == "retry-after":
            seconds = parse_retry_after({name: value})
            if seconds is not None:
                relayed.append(("Retry-After", str(max(1, round(seconds)))))
        elif name in RELAYED_HEADERS:
            relayed.append((name, _redacted(value, key)))
        elif name == "x-request-id":
            # Ours stays in X-Request-Id. Blanked before it is cut, so no piece of a key stays.
            relayed.append(("X-Upstream-Request-Id", _redacted(value, key)[:200]))
    return relayed


def _redacted(value: str, key: str | None) -> str:
    redacting = redactor(key) if key else None
    return redacting.text(value) if redacting else value


def parse_retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait (`retry-after-ms`, `Retry-After` seconds or date),
    capped at MAX_RETRY_AFTER; None when it asked nothing usable."""
    millis = headers.get("retry-after-ms")
    seconds: float | None = None
    if millis:
        try:
            seconds = float(millis) / 1000
        except ValueError:
            seconds = None
    value = headers.get("retry-after")
    if seconds is None and value:
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError, IndexError):
                seconds = None
    if seconds is None or seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER)
