"""Typed, validated settings: the process environment first, then `config.txt`.

Every setting is declared once in `SETTINGS`; `config.txt.sample` documents the same list (a test
keeps the two in step). A bad value raises `SettingsError` with one line naming the setting and
what it accepts, and the server stops before it binds a port.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

DEFAULT_CONFIG_FILE = "config.txt"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
ENVIRONMENT_TYPES = ("development", "test", "production")


class SettingsError(ValueError):
    """A setting has a value the service cannot run with; the message is one line."""


def _choice(*allowed: str, case_insensitive: bool = False) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.upper() if case_insensitive else raw
        if value not in allowed:
            raise SettingsError(f"{name}={raw!r} is not valid; use one of: {', '.join(allowed)}")
        return value

    return parse


def _optional_choice(*allowed: str) -> Callable[[str, str], str | None]:
    strict = _choice(*allowed)

    def parse(name: str, raw: str) -> str | None:
        return strict(name, raw) if raw else None

    return parse


def _number(kind: type, low: float, high: float) -> Callable[[str, str], Any]:
    def parse(name: str, raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise SettingsError(f"{name}={raw!r} is not valid; use {noun} from {low} to {high}") from None
        if not low <= value <= high:
            raise SettingsError(f"{name}={raw!r} is out of range; use a value from {low} to {high}")
        return value

    return parse


def _url(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name}={raw!r} is not valid; use an http:// or https:// URL")
    return raw.rstrip("/")


def _text(name: str, raw: str) -> str:
    return raw


def _optional_text(name: str, raw: str) -> str | None:
    return raw or None


def _optional_key(min_length: int) -> Callable[[str, str], str | None]:
    def parse(name: str, raw: str) -> str | None:
        if raw and (len(raw) < min_length or any(c.isspace() for c in raw)):
            raise SettingsError(
                f"{name} is not valid; use at least {min_length} characters, no spaces, or nothing"
            )
        return raw or None

    return parse


def _model_aliases(name: str, raw: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        aliases = json.loads(raw)
    except ValueError:
        aliases = None
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and k.strip() and isinstance(v, str) and v.strip() for k, v in aliases.items()
    ):
        example = '{"claude": "bedrock/<model id>"}'
        raise SettingsError(f"{name} is not valid; use a JSON object of names to models, e.g. {example}")
    return {k.strip(): v.strip() for k, v in aliases.items()}


def _bedrock_models(name: str, raw: str) -> tuple[str, ...]:
    # Accepted with or without the `bedrock/` prefix; kept without it (the id Bedrock knows).
    models = [part.strip().removeprefix("bedrock/") for part in raw.split(",")]
    if any(not model or any(c.isspace() for c in model) for model in models if raw):
        raise SettingsError(f"{name}={raw!r} is not valid; use comma-separated Bedrock model ids")
    return tuple(models) if raw else ()


@dataclass(frozen=True)
class Setting:
    env: str  # the variable's name in the environment and in config.txt
    attr: str  # the attribute of `Settings` that holds the parsed value
    default: str
    parse: Callable[[str, str], Any]
    help: str


def setting(
    env: str, default: str, parse: Callable[[str, str], Any], help: str, *, secret: bool = False
) -> Any:
    """Declare a field of `Settings`: the variable it is read from, its default (as text), how
    the text is parsed (raising SettingsError naming the variable) and a one-line description.
    A `secret` one is left out of the settings' repr, so it never reaches a log line."""
    return field(repr=not secret, metadata={"env": env, "default": default, "parse": parse, "help": help})


# Secrets are not settings: they are read through `service.secrets`, which looks at these same
# sources first (docs/running.md, "Secrets"). They are listed here so config.txt.sample documents them.
SECRET_VARIABLES: dict[str, str] = {
    "OPENAI_API_KEY": "provider key for OPENAI_BASE_URL; else secret openai_api_key",
    "HONEYBADGER_API_KEY": "enables Honeybadger error reports; else secret honeybadger_api_key",
    "AIPROXY_CLIENT_KEYS": "client key store as JSON (docs/client-keys.md); else secret client_api_keys",
}


@dataclass(frozen=True)
class Settings:
    """Every setting, declared once: its variable, default, parser and help (config.txt.sample
    lists the same, and a test keeps the two in step)."""

    # Provider and upstream.
    openai_base_url: str = setting(
        "OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        _url,
        "OpenAI-compatible upstream (OpenAI, vLLM, Ollama, a test fake)",
    )
    upstream_connect_timeout: float = setting(
        "AIPROXY_UPSTREAM_CONNECT_TIMEOUT",
        "10",
        _number(float, 0.1, 300),
        "seconds to open a connection to the upstream",
    )
    upstream_timeout: float = setting(
        "AIPROXY_UPSTREAM_TIMEOUT",
        "300",
        _number(float, 0.1, 3600),
        "seconds to wait for the upstream's answer (or the next streamed chunk)",
    )
    upstream_retries: int = setting(
        "AIPROXY_UPSTREAM_RETRIES",
        "2",
        _number(int, 0, 10),
        "retries of a failed non-streaming upstream request (429, 5xx, connection errors)",
    )
    upstream_backoff: float = setting(
        "AIPROXY_UPSTREAM_BACKOFF",
        "0.5",
        _number(float, 0, 60),
        "seconds before the first retry; each later retry waits up to twice as long (with jitter)",
    )
    upstream_backoff_max: float = setting(
        "AIPROXY_UPSTREAM_BACKOFF_MAX",
        "8",
        _number(float, 0, 600),
        "longest wait before a retry; a longer upstream Retry-After is answered at once instead",
    )
    model_aliases: dict[str, str] = setting(
        "AIPROXY_MODEL_ALIASES",
        "",
        _model_aliases,
        'JSON object of short model names, e.g. {"nova": "bedrock/us.amazon.nova-lite-v1:0"}',
    )
    bedrock_models: tuple[str, ...] = setting(
        "AIPROXY_BEDROCK_MODELS",
        "",
        _bedrock_models,
        "comma-separated Amazon Bedrock model ids or inference profiles listed by GET /v1/models",
    )
    assessment_model: str = setting(
        "AIPROXY_ASSESSMENT_MODEL",
        "gpt-4o-mini",
        _text,
        "model used by /assessment when the request names none",
    )
    # Logging and error reporting.
    log_level: str = setting(
        "LOG_LEVEL",
        "INFO",
        _choice(*LOG_LEVELS, case_insensitive=True),
        "lowest level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        _choice(*LOG_FORMATS),
        "text (for people) or json (one object a line, for CloudWatch)",
    )
    honeybadger_endpoint: str = setting(
        "HONEYBADGER_ENDPOINT",
        "https://api.honeybadger.io",
        _url,
        "where Honeybadger reports go (tests point it at a local catcher)",
    )
    # Where this deployment is; selects the Secrets Manager prefix.
    environment: str | None = setting(
        "ENVIRONMENT",
        "",
        _optional_text,
        "DNS name of this deployment, e.g. aiproxy.example.org (empty when local)",
    )
    environment_type: str | None = setting(
        "ENVIRONMENT_TYPE",
        "",
        _optional_choice(*ENVIRONMENT_TYPES),
        "development, test or production (empty when local)",
    )
    secrets_ttl: float = setting(
        "AIPROXY_SECRETS_TTL",
        "300",
        _number(float, 0, 86400),
        "seconds a value read from Secrets Manager is reused before it is read again",
    )
    # The HTTP server.
    host: str = setting("HOST", "127.0.0.1", _text, "address the server listens on")
    port: int = setting("PORT", "5000", _number(int, 1, 65535), "port the server listens on")
    workers: int = setting(
        "AIPROXY_WORKERS",
        "2",
        _number(int, 1, 64),
        "server processes; each holds AIPROXY_WORKER_CONNECTIONS requests at once",
    )
    worker_connections: int = setting(
        "AIPROXY_WORKER_CONNECTIONS",
        "1000",
        _number(int, 10, 100000),
        "concurrent requests one server process holds (slow LLM calls included)",
    )
    graceful_timeout: int = setting(
        "AIPROXY_GRACEFUL_TIMEOUT",
        "30",
        _number(int, 0, 3600),
        "seconds in-flight requests get to finish after SIGTERM",
    )
    keepalive: int = setting(
        "AIPROXY_KEEPALIVE",
        "620",
        _number(int, 0, 3600),
        "seconds an idle client connection is kept open (above the load balancer's idle timeout)",
    )
    max_body_bytes: int = setting(
        "AIPROXY_MAX_BODY_BYTES",
        "10485760",
        _number(int, 1024, 1 << 30),
        "largest request body accepted; larger ones get 413",
    )
    header_timeout: float = setting(
        "AIPROXY_HEADER_TIMEOUT",
        "10",
        _number(float, 1, 300),
        "seconds a new connection gets to send a whole request head; then it is closed",
    )
    body_timeout: float = setting(
        "AIPROXY_BODY_TIMEOUT",
        "60",
        _number(float, 1, 3600),
        "seconds a client gets to send a request body; then 408 and the connection is closed",
    )
    # Per-client limits for clients whose key store entry sets none (docs/client-keys.md).
    default_rpm: int = setting(
        "AIPROXY_DEFAULT_RPM",
        "600",
        _number(int, 1, 100000),
        "requests a client may send per minute unless its key store entry sets rpm",
    )
    default_max_concurrent: int = setting(
        "AIPROXY_DEFAULT_MAX_CONCURRENT",
        "50",
        _number(int, 1, 100000),
        "requests a client may have in flight at once unless its key store entry sets max_concurrent",
    )
    output_tokens_estimate: int = setting(
        "AIPROXY_OUTPUT_TOKENS_ESTIMATE",
        "1000",
        _number(int, 0, 1000000),
        "output tokens a request is assumed to use when it sets no max_tokens (the tpm limit's estimate)",
    )
    # Metrics.
    metrics_key: str | None = setting(
        "AIPROXY_METRICS_KEY",
        "",
        _optional_key(16),
        "key GET /metrics asks for (Authorization: Bearer <key>); empty: /metrics answers 404",
        secret=True,
    )
    # Every raw KEY=VALUE the settings were read from (environment over config.txt); the secrets
    # loader looks here for its overrides. Excluded from repr so no secret reaches a log line.
    source: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)


# The table of every setting, from the declarations above (config.txt.sample, docs and tests read it).
SETTINGS: tuple[Setting, ...] = tuple(
    Setting(f.metadata["env"], f.name, f.metadata["default"], f.metadata["parse"], f.metadata["help"])
    for f in fields(Settings)
    if "env" in f.metadata
)


def read_config_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Parse `KEY=VALUE` lines; blank lines and `#` comments are skipped. Missing file: `{}`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if key.startswith("export "):
            key = key[len("export ") :].strip()
        if not sep or not key:
            raise SettingsError(f"{path} line {number}: expected KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: str | os.PathLike[str] | None = DEFAULT_CONFIG_FILE,
    **overrides: str,
) -> Settings:
    """Read settings from `environ` (default: the process environment), then `config_file`.

    `overrides` are raw values by variable name and win over both (tests use them).
    """
    source: dict[str, str] = {}
    if config_file is not None:
        source.update(read_config_file(config_file))
    source.update(os.environ if environ is None else environ)
    source.update(overrides)
    # An empty value means "not set": `LOG_LEVEL=` in an env file falls back to the default.
    values = {s.attr: s.parse(s.env, (source.get(s.env) or s.default).strip()) for s in SETTINGS}
    return Settings(**values, source=source)


def settings_fields() -> list[str]:
    return [f.name for f in fields(Settings) if f.name != "source"]
