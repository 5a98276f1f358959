"""Typed, validated settings: the process environment first, then `config.txt`.

Every setting is declared once in `SETTINGS`; `config.txt.sample` documents the same list (a test
keeps the two in step). A bad value raises `SettingsError` with one line naming the setting and
what it accepts, and the server stops before it binds a port.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.config.prices import Price, parse_prices

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


def _alias_target(value: Any) -> bool:
    """A model name, or a model with a weight: `{"model": "<name>", "weight": 3}`."""
    if isinstance(value, str):
        return bool(value.strip())
    return (
        isinstance(value, dict)
        and set(value) <= {"model", "weight"}
        and isinstance(value.get("model"), str)
        and bool(value["model"].strip())
        and not isinstance(value.get("weight", 1), bool)
        and isinstance(value.get("weight", 1), int | float)
        and value.get("weight", 1) > 0
    )


def _alias_value(value: Any) -> bool:
    """One model, or a model group: a list of ranks, each a model or a list of weighted models."""
    if isinstance(value, str):
        return bool(value.strip())
    if not isinstance(value, list) or not value:
        return False
    return all(
        _alias_target(rank) or (isinstance(rank, list) and rank and all(_alias_target(t) for t in rank))
        for rank in value
    )


def _model_aliases(name: str, raw: str) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        aliases = json.loads(raw)
    except ValueError:
        aliases = None
    if not isinstance(aliases, dict) or not all(
        isinstance(k, str) and k.strip() and _alias_value(v) for k, v in aliases.items()
    ):
        example = '{"claude": "bedrock/<model id>", "grader": ["azure/gpt-4o", "gpt-4o"]}'
        raise SettingsError(
            f"{name} is not valid; use a JSON object of names to a model or an ordered list of models, "
            f"e.g. {example}"
        )
    return {k.strip(): v.strip() if isinstance(v, str) else v for k, v in aliases.items()}


_UPSTREAM_FIELDS = {
    "base_url": str,
    "key_secret": str,
    "key_env": str,
    "key_header": str,
    "headers": dict,
    "query": dict,
    "timeout": float,
    "stream_usage": bool,
}


@dataclass(frozen=True)
class Upstream:
    """An OpenAI-compatible upstream of AIPROXY_UPSTREAMS, reached with models named `<name>/<model>`."""

    name: str
    base_url: str
    key_secret: str | None = None  # a secret's name (read as every secret is), holding the key
    key_env: str | None = None  # or the environment variable (or config.txt line) holding it
    key_header: str = "Authorization"  # `Authorization: Bearer <key>`, or the key alone in this header
    headers: tuple[tuple[str, str], ...] = ()  # sent with every request (never the key's header)
    query: tuple[tuple[str, str], ...] = ()  # added to every request's URL (Azure's api-version)
    timeout: float | None = None  # else AIPROXY_UPSTREAM_TIMEOUT
    stream_usage: bool = True  # whether it accepts stream_options.include_usage


def _upstreams(name: str, raw: str) -> dict[str, Upstream]:
    if not raw:
        return {}
    example = '{"azure": {"base_url": "https://x.openai.azure.com/openai/v1", "key_secret": "azure_api_key"}}'
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise SettingsError(f"{name} is not valid; use a JSON object of upstream names, e.g. {example}")
    upstreams = {}
    for upstream, entry in data.items():
        where = f"{name}: upstream {upstream!r}"
        if not isinstance(upstream, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,31}", upstream):
            raise SettingsError(
                f"{name}: an upstream's name must be 1 to 32 lower-case letters, digits, - or _"
            )
        if upstream == "bedrock":
            raise SettingsError(f"{where}: 'bedrock' names Amazon Bedrock; choose another name")
        if not isinstance(entry, dict) or "base_url" not in entry:
            raise SettingsError(f"{where} needs an object with base_url")
        unknown = sorted(set(entry) - set(_UPSTREAM_FIELDS))
        if unknown:
            raise SettingsError(
                f"{where} has unknown fields {unknown}; allowed: {', '.join(_UPSTREAM_FIELDS)}"
            )
        for field_name, kind in _UPSTREAM_FIELDS.items():
            value = entry.get(field_name)
            if value is None:
                continue
            wrong = (kind is float and (isinstance(value, bool) or not isinstance(value, int | float))) or (
                kind is not float and not isinstance(value, kind)
            )
            if wrong:
                raise SettingsError(f"{where}: {field_name} must be {kind.__name__}")
        for field_name in ("headers", "query"):
            pairs = entry.get(field_name) or {}
            if not all(
                isinstance(k, str) and isinstance(v, str) and "\n" not in k + v for k, v in pairs.items()
            ):
                raise SettingsError(f"{where}: {field_name} must map names to text")
        if entry.get("key_secret") and entry.get("key_env"):
            raise SettingsError(f"{where}: give key_secret or key_env, not both")
        timeout = entry.get("timeout")
        if timeout is not None and not 0.1 <= timeout <= 3600:
            raise SettingsError(f"{where}: timeout must be from 0.1 to 3600 seconds")
        upstreams[upstream] = Upstream(
            name=upstream,
            base_url=_url(f"{where}: base_url", entry["base_url"]),
            key_secret=entry.get("key_secret"),
            key_env=entry.get("key_env"),
            key_header=entry.get("key_header") or "Authorization",
            headers=tuple((entry.get("headers") or {}).items()),
            query=tuple((entry.get("query") or {}).items()),
            timeout=None if timeout is None else float(timeout),
            stream_usage=entry.get("stream_usage", True),
        )
    return upstreams


def _flag(name: str, raw: str) -> bool:
    value = raw.lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise SettingsError(f"{name}={raw!r} is not valid; use true or false")
    return value in ("true", "1", "yes")


def _redis_url(name: str, raw: str) -> str | None:
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


def _prices(name: str, raw: str) -> dict[str, Price]:
    if not raw:
        return {}
    try:
        return parse_prices(json.loads(raw), name)
    except ValueError as error:  # not JSON, or an entry that is not a price
        message = str(error) if str(error).startswith(name) else f"{name} is not valid JSON"
        raise SettingsError(message.splitlines()[0]) from None


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


# Secrets are not settings: they are read through `service.config.secrets`, which looks at these same
# sources first (docs/running.md, "Secrets"). They are listed here so config.txt.sample documents them.
SECRET_VARIABLES: dict[str, str] = {
    "OPENAI_API_KEY": "provider key for OPENAI_BASE_URL; else secret openai_api_key",
    "HONEYBADGER_API_KEY": "enables Honeybadger error reports; else secret honeybadger_api_key",
    "AIPROXY_CLIENT_KEYS": "client key store as JSON (docs/client-keys.md); else secret client_api_keys",
    "AIPROXY_REDIS_PASSWORD": "password of the limits store (AIPROXY_REDIS_URL); else secret redis_auth",
    "AIPROXY_SAFETY_POLICIES": "named safety policies as JSON (docs/safety.md); else secret safety_policies",
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
    upstreams: dict[str, Upstream] = setting(
        "AIPROXY_UPSTREAMS",
        "",
        _upstreams,
        "JSON object of more OpenAI-compatible upstreams, reached with models named <name>/<model>, e.g. "
        '{"azure": {"base_url": "https://x.openai.azure.com/openai/v1", "key_secret": "azure_api_key"}}',
    )
    cooldown_seconds: float = setting(
        "AIPROXY_COOLDOWN_SECONDS",
        "30",
        _number(float, 0, 3600),
        "seconds a model group passes over a deployment that failed (429, 5xx, timeout) or its Retry-After",
    )
    group_timeout: float = setting(
        "AIPROXY_GROUP_TIMEOUT",
        "600",
        _number(float, 1, 7200),
        "seconds a model group may spend on one request over all its deployments; none is tried after",
    )
    model_aliases: dict[str, Any] = setting(
        "AIPROXY_MODEL_ALIASES",
        "",
        _model_aliases,
        "JSON object of short model names, each for a model or an ordered list tried in turn (a model "
        'group), e.g. {"nova": "bedrock/us.amazon.nova-lite-v1:0", "grader": ["azure/gpt-4o", "gpt-4o"]}',
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
    # The shared store of those limits (docs/client-keys.md, "Shared limits").
    redis_url: str | None = setting(
        "AIPROXY_REDIS_URL",
        "",
        _redis_url,
        "Redis or Valkey where every process and task counts client limits, e.g. rediss://aiproxy@host:6379; "
        "empty: each process counts alone",
    )
    redis_cluster: bool = setting(
        "AIPROXY_REDIS_CLUSTER",
        "false",
        _flag,
        "true when the store speaks the cluster protocol (a clustered Valkey, ElastiCache Serverless)",
    )
    limits_on_store_error: str = setting(
        "AIPROXY_LIMITS_ON_STORE_ERROR",
        "open",
        _choice("open", "closed"),
        "when the store cannot be reached: open (count per process meanwhile) or closed (answer 503)",
    )
    limits_lease_seconds: float = setting(
        "AIPROXY_LIMITS_LEASE_SECONDS",
        "30",
        _number(float, 2, 3600),
        "seconds the in-flight slots of a process that died stay taken (they are renewed while it lives)",
    )
    prices: dict[str, Price] = setting(
        "AIPROXY_PRICES",
        "",
        _prices,
        "prices in USD per million tokens, added to or replacing the shipped ones, e.g. "
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
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
