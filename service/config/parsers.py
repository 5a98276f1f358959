"""Parsers of a setting's text (`service.config.setting.Parser`) for the plain kinds: choices,
numbers in a range, URLs, flags, keys. Each raises SettingsError with one line naming the setting
and what it accepts. The JSON-valued settings have modules of their own (`upstreams`,
`model_aliases`, `prices`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from service.config.setting import SettingsError

N = TypeVar("N", int, float)


def choice(*allowed: str, case_insensitive: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.upper() if case_insensitive else raw
        if value not in allowed:
            raise SettingsError(f"{name}={raw!r} is not valid; use one of: {', '.join(allowed)}")
        return value

    return parse


def optional_choice(*allowed: str) -> Callable[[str, str], str | None]:
    strict = choice(*allowed)

    def parse(name: str, raw: str) -> str | None:
        return strict(name, raw) if raw else None

    return parse


def _in_range(kind: type[N], low: float, high: float) -> Callable[[str, str], N]:
    def parse(name: str, raw: str) -> N:
        try:
            value = kind(raw)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise SettingsError(f"{name}={raw!r} is not valid; use {noun} from {low} to {high}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={raw!r} is out of range; use a value from {low} to {high}")
        return value

    return parse


def whole_number(low: int, high: int) -> Callable[[str, str], int]:
    return _in_range(int, low, high)


def number(low: float, high: float) -> Callable[[str, str], float]:
    return _in_range(float, low, high)


def url(name: str, raw: str) -> str:
    """An http:// or https:// URL, kept without a trailing slash."""
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name}={raw!r} is not valid; use an http:// or https:// URL")
    return raw.rstrip("/")


def optional_header_name(name: str, raw: str) -> str | None:
    """An HTTP header's name (letters, digits, -), lower-cased; None when empty."""
    value = raw.strip().lower()
    if not value:
        return None
    if not all(c.isascii() and (c.isalnum() or c == "-") for c in value):
        raise SettingsError(f"{name}={raw!r} is not valid; use a header name (letters, digits and -)")
    return value


def text(name: str, raw: str) -> str:
    return raw


def optional_text(name: str, raw: str) -> str | None:
    return raw or None


def optional_key(min_length: int) -> Callable[[str, str], str | None]:
    def parse(name: str, raw: str) -> str | None:
        if raw and (len(raw) < min_length or any(c.isspace() for c in raw)):
            raise SettingsError(
                f"{name} is not valid; use at least {min_length} characters, no spaces, or nothing"
            )
        return raw or None

    return parse


def flag(name: str, raw: str) -> bool:
    value = raw.lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"{name}={raw!r} is not valid; use true or false")
    return value in ("true", "1", "yes")


def store_url(name: str, raw: str) -> str | None:
    """Where Redis or Valkey is: redis:// or rediss://, never with a password."""
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise SettingsError(
            f"{name} is not valid; use redis://host:port or rediss://user@host:port (TLS), without a password"
        )
    if parts.password:
        # A password in a setting ends up in process listings and logs: it belongs in the secret.
        raise SettingsError(
            f"{name} must not hold a password; put it in AIPROXY_REDIS_PASSWORD or the secret redis_auth"
        )
    return raw


def bedrock_model_ids(name: str, raw: str) -> tuple[str, ...]:
    # Accepted with or without the `bedrock/` prefix; kept without it (the id Bedrock knows).
    models = [part.strip().removeprefix("bedrock/") for part in raw.split(",")]
    if any(not model or any(c.isspace() for c in model) for model in models if raw):
        raise SettingsError(f"{name}={raw!r} is not valid; use comma-separated Bedrock model ids")
    return tuple(models) if raw else ()
