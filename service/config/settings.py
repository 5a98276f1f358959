"""Typed, validated settings: the process environment first, then `config.txt`.

Every setting is declared once in `Settings` (`service.config.setting`), parsed once at start-up
into a typed value (`parsers` for plain text, `upstreams`, `model_aliases` and `prices` for the
JSON-valued ones); `config.txt.sample` documents the same list (a test keeps the two in step). A
bad value raises `SettingsError` with one line naming the setting and what it accepts, and the
server stops before it binds a port.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from service.config import parsers as parse
from service.config.config_file import DEFAULT_CONFIG_FILE, read_config_file
from service.config.model_aliases import ModelAlias, parse_model_aliases
from service.config.prices import Price, prices_setting
from service.config.setting import Setting, setting
from service.config.upstreams import Upstream, parse_upstreams

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
ENVIRONMENT_TYPES = ("development", "test", "production")


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
        parse.url,
        "OpenAI-compatible upstream (OpenAI, vLLM, Ollama, a test fake)",
    )
    upstream_connect_timeout: float = setting(
        "AIPROXY_UPSTREAM_CONNECT_TIMEOUT",
        "10",
        parse.number(0.1, 300),
        "seconds to open a connection to the upstream",
    )
    upstream_timeout: float = setting(
        "AIPROXY_UPSTREAM_TIMEOUT",
        "300",
        parse.number(0.1, 3600),
        "seconds to wait for the upstream's answer (or the next streamed chunk)",
    )
    upstream_retries: int = setting(
        "AIPROXY_UPSTREAM_RETRIES",
        "2",
        parse.whole_number(0, 10),
        "retries of a failed non-streaming upstream request (429, 5xx, connection errors)",
    )
    upstream_backoff: float = setting(
        "AIPROXY_UPSTREAM_BACKOFF",
        "0.5",
        parse.number(0, 60),
        "seconds before the first retry; each later retry waits up to twice as long (with jitter)",
    )
    upstream_backoff_max: float = setting(
        "AIPROXY_UPSTREAM_BACKOFF_MAX",
        "8",
        parse.number(0, 600),
        "longest wait before a retry; a longer upstream Retry-After is answered at once instead",
    )
    upstreams: dict[str, Upstream] = setting(
        "AIPROXY_UPSTREAMS",
        "",
        parse_upstreams,
        "JSON object of more OpenAI-compatible upstreams, reached with models named <name>/<model>, e.g. "
        '{"azure": {"base_url": "https://x.openai.azure.com/openai/v1", "key_secret": "azure_api_key"}}',
    )
    cooldown_seconds: float = setting(
        "AIPROXY_COOLDOWN_SECONDS",
        "30",
        parse.number(0, 3600),
        "seconds a model group passes over a deployment that failed (429, 5xx, timeout) or its Retry-After",
    )
    group_timeout: float = setting(
        "AIPROXY_GROUP_TIMEOUT",
        "600",
        parse.number(1, 7200),
        "seconds a model group may spend on one request over all its deployments; none is tried after",
    )
    model_aliases: dict[str, ModelAlias] = setting(
        "AIPROXY_MODEL_ALIASES",
        "",
        parse_model_aliases,
        "JSON object of short model names, each for a model or an ordered list tried in turn (a model "
        'group), e.g. {"nova": "bedrock/us.amazon.nova-lite-v1:0", "grader": ["azure/gpt-4o", "gpt-4o"]}',
    )
    region_header: str | None = setting(
        "AIPROXY_REGION_HEADER",
        "",
        parse.optional_header_name,
        "request header holding the caller's country (ISO code), for model group deployments with "
        "regions; set it only behind something that overwrites it (the stack's WAF); empty: none read",
    )
    bedrock_models: tuple[str, ...] = setting(
        "AIPROXY_BEDROCK_MODELS",
        "",
        parse.bedrock_model_ids,
        "comma-separated Amazon Bedrock model ids or inference profiles listed by GET /v1/models",
    )
    assessment_model: str = setting(
        "AIPROXY_ASSESSMENT_MODEL",
        "gpt-4o-mini",
        parse.text,
        "model used by /assessment when the request names none",
    )
    # Logging and error reporting.
    log_level: str = setting(
        "LOG_LEVEL",
        "INFO",
        parse.choice(*LOG_LEVELS, case_insensitive=True),
        "lowest level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    log_format: str = setting(
        "LOG_FORMAT",
        "text",
        parse.choice(*LOG_FORMATS),
        "text (for people) or json (one object a line, for CloudWatch)",
    )
    honeybadger_endpoint: str = setting(
        "HONEYBADGER_ENDPOINT",
        "https://api.honeybadger.io",
        parse.url,
        "where Honeybadger reports go (tests point it at a local catcher)",
    )
    # Where this deployment is; selects the Secrets Manager prefix.
    environment: str | None = setting(
        "ENVIRONMENT",
        "",
        parse.optional_text,
        "DNS name of this deployment, e.g. aiproxy.example.org (empty when local)",
    )
    environment_type: str | None = setting(
        "ENVIRONMENT_TYPE",
        "",
        parse.optional_choice(*ENVIRONMENT_TYPES),
        "development, test or production (empty when local)",
    )
    secrets_ttl: float = setting(
        "AIPROXY_SECRETS_TTL",
        "300",
        parse.number(0, 86400),
        "seconds a value read from Secrets Manager is reused before it is read again",
    )
    # The HTTP server.
    host: str = setting("HOST", "127.0.0.1", parse.text, "address the server listens on")
    port: int = setting("PORT", "5000", parse.whole_number(1, 65535), "port the server listens on")
    workers: int = setting(
        "AIPROXY_WORKERS",
        "2",
        parse.whole_number(1, 64),
        "server processes; each holds AIPROXY_WORKER_CONNECTIONS requests at once",
    )
    worker_connections: int = setting(
        "AIPROXY_WORKER_CONNECTIONS",
        "1000",
        parse.whole_number(10, 100000),
        "concurrent requests one server process holds (slow LLM calls included)",
    )
    graceful_timeout: int = setting(
        "AIPROXY_GRACEFUL_TIMEOUT",
        "30",
        parse.whole_number(0, 3600),
        "seconds in-flight requests get to finish after SIGTERM",
    )
    keepalive: int = setting(
        "AIPROXY_KEEPALIVE",
        "620",
        parse.whole_number(0, 3600),
        "seconds an idle client connection is kept open (above the load balancer's idle timeout)",
    )
    max_body_bytes: int = setting(
        "AIPROXY_MAX_BODY_BYTES",
        "10485760",
        parse.whole_number(1024, 1 << 30),
        "largest request body accepted; larger ones get 413",
    )
    max_upload_bytes: int = setting(
        "AIPROXY_MAX_UPLOAD_BYTES",
        "26214400",
        parse.whole_number(1024, 1 << 32),
        "largest upload (audio, image edits, files), sent on as it arrives; larger ones get 413",
    )
    header_timeout: float = setting(
        "AIPROXY_HEADER_TIMEOUT",
        "10",
        parse.number(1, 300),
        "seconds a new connection gets to send a whole request head; then it is closed",
    )
    body_timeout: float = setting(
        "AIPROXY_BODY_TIMEOUT",
        "60",
        parse.number(1, 3600),
        "seconds a client gets to send a request body; then 408 and the connection is closed",
    )
    # Per-client limits for clients whose key store entry sets none (docs/client-keys.md).
    default_rpm: int = setting(
        "AIPROXY_DEFAULT_RPM",
        "600",
        parse.whole_number(1, 100000),
        "requests a client may send per minute unless its key store entry sets rpm",
    )
    default_max_concurrent: int = setting(
        "AIPROXY_DEFAULT_MAX_CONCURRENT",
        "50",
        parse.whole_number(1, 100000),
        "requests a client may have in flight at once unless its key store entry sets max_concurrent",
    )
    # The shared store of those limits (docs/client-keys.md, "Shared limits").
    redis_url: str | None = setting(
        "AIPROXY_REDIS_URL",
        "",
        parse.store_url,
        "Redis or Valkey where every process and task counts client limits, e.g. rediss://aiproxy@host:6379; "
        "empty: each process counts alone",
    )
    redis_cluster: bool = setting(
        "AIPROXY_REDIS_CLUSTER",
        "false",
        parse.flag,
        "true when the store speaks the cluster protocol (a clustered Valkey, ElastiCache Serverless)",
    )
    limits_on_store_error: str = setting(
        "AIPROXY_LIMITS_ON_STORE_ERROR",
        "open",
        parse.choice("open", "closed"),
        "when the store cannot be reached: open (count per process meanwhile) or closed (answer 503)",
    )
    limits_lease_seconds: float = setting(
        "AIPROXY_LIMITS_LEASE_SECONDS",
        "30",
        parse.number(2, 3600),
        "seconds the in-flight slots of a process that died stay taken (they are renewed while it lives)",
    )
    prices: dict[str, Price] = setting(
        "AIPROXY_PRICES",
        "",
        prices_setting,
        "prices in USD per million tokens, added to or replacing the shipped ones, e.g. "
        '{"gpt-4o-mini": {"input": 0.15, "output": 0.6}}',
    )
    output_tokens_estimate: int = setting(
        "AIPROXY_OUTPUT_TOKENS_ESTIMATE",
        "1000",
        parse.whole_number(0, 1000000),
        "output tokens a request is assumed to use when it sets no max_tokens (the tpm limit's estimate)",
    )
    # Metrics.
    metrics_key: str | None = setting(
        "AIPROXY_METRICS_KEY",
        "",
        parse.optional_key(16),
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
