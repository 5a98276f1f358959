"""Which provider serves a model: aliases first, then prefixes, else the default upstream.

A model name resolves to one or more deployments (a provider and the model id it knows):

- an alias (AIPROXY_MODEL_ALIASES, parsed at start-up by `service.config.model_aliases`) stands
  for one model name, or for a model group: ranks tried in turn when one fails
  (`service.gateway.fallback`), each of models of equal rank among which the load is spread by
  weight;
- `bedrock/<model id>` (or `bedrock.<model id>`, as the original service's clients write it) is
  served by Amazon Bedrock;
- `<name>/<model id>`, where `<name>` is an upstream configured in AIPROXY_UPSTREAMS, goes to that
  upstream as `<model id>`;
- anything else, slashes included (`meta-llama/Llama-3.1-8B` for a vLLM upstream), goes to the
  default upstream (OPENAI_BASE_URL) unchanged; except that OpenAI itself names no model with a
  slash, so while the default upstream is OpenAI's API, `<name>/...` with an unknown `<name>` is a
  400 naming it rather than a request sent where it does not belong.

Alias targets are resolved once (an alias never names another alias).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import urlsplit

from service.config.model_aliases import ModelAlias
from service.config.secrets import OPENAI_API_KEY, SecretStore, env_variable
from service.config.setting import SettingsError
from service.config.settings import Settings
from service.config.upstreams import Upstream
from service.core.errors import RequestRejected
from service.gateway.cooldowns import Cooldowns
from service.gateway.providers import Provider
from service.gateway.providers.bedrock import BedrockProvider
from service.gateway.providers.openai import OpenAICompatible

BEDROCK_PREFIXES = ("bedrock/", "bedrock.")
DEFAULT_UPSTREAM = "openai"  # the name of the upstream at OPENAI_BASE_URL
OPENAI_HOST = "api.openai.com"


@dataclass(frozen=True)
class Deployment:
    """A model as one provider serves it."""

    provider: Provider
    model: str  # the id the provider knows (routing prefix removed)
    weight: float = 1.0

    @property
    def name(self) -> str:
        """`<provider>/<model>`: what `x-aiproxy-deployment` and usage records show."""
        return f"{self.provider.name}/{self.model}"

    @property
    def routed_name(self) -> str:
        """The model name that routes to this deployment (`bedrock/<id>`, `<upstream>/<id>`, `<id>`)."""
        return self.provider.prefix + self.model


def bedrock_model_id(model: str) -> str | None:
    """The Bedrock model id of `bedrock/<id>` or `bedrock.<id>`, else None."""
    for prefix in BEDROCK_PREFIXES:
        if model.startswith(prefix) and len(model) > len(prefix):
            return model[len(prefix) :]
    return None


class Router:
    """Resolves model names to deployments, and remembers which deployments are cooling down.
    Built once per app (`build_router`)."""

    def __init__(
        self,
        *,
        default: Provider,
        bedrock: Provider,
        upstreams: Mapping[str, Provider] | None = None,
        aliases: Mapping[str, ModelAlias] | None = None,
        overall_timeout: float = 300.0,
        strict_prefixes: bool = False,
    ) -> None:
        self.default = default
        self.bedrock = bedrock
        self.upstreams = dict(upstreams or {})
        self.aliases = dict(aliases or {})
        self.cooldowns = Cooldowns(0)  # build_router sets the configured ones
        self.overall_timeout = overall_timeout  # a model group tries deployments within this
        self.strict_prefixes = strict_prefixes  # unknown `<name>/...` is a 400 (the default is OpenAI)
        # Each alias's deployments, rank by rank, resolved here once (every target must route
        # somewhere); a request only orders them.
        self.groups = {
            name: [
                [self.deployment(target.model, target.weight, where=f"alias {name!r}") for target in rank]
                for rank in alias.ranks
            ]
            for name, alias in self.aliases.items()
        }

    def deployments(self, model: str) -> list[Deployment]:
        """The deployments that may serve `model`, in the order to try them."""
        group = self.groups.get(model)
        if group is None:
            return [self.deployment(model)]
        ordered: list[Deployment] = []
        for rank in group:
            ordered += _by_weight(rank)
        return ordered

    def deployment(self, model: str, weight: float = 1.0, *, where: str | None = None) -> Deployment:
        """The one deployment a plain model name (not an alias) stands for."""
        model_id = bedrock_model_id(model)
        if model_id is not None:
            return Deployment(self.bedrock, model_id, weight)
        name, slash, rest = model.partition("/")
        if slash and rest and name in self.upstreams:
            return Deployment(self.upstreams[name], rest, weight)
        if slash and self.strict_prefixes:
            configured = ", ".join(sorted(self.upstreams)) or "none"
            message = (
                f"Model {model!r} names the upstream {name!r}, which is not configured "
                f"(upstreams: bedrock, {configured}); the default upstream, OpenAI, has no model with a '/'."
            )
            if where is not None:
                raise SettingsError(f"AIPROXY_MODEL_ALIASES: {where}: {message}")
            raise RequestRejected(message, param="model", code="model_not_found")
        return Deployment(self.default, model, weight)

    def grouped(self) -> set[str]:
        """The names of every deployment that belongs to a model group of more than one."""
        return {
            deployment.name
            for group in self.groups.values()
            if sum(len(rank) for rank in group) > 1
            for rank in group
            for deployment in rank
        }

    def listed_aliases(self) -> list[dict[str, Any]]:
        """OpenAI model objects for the aliases (GET /v1/models)."""
        return [
            {
                "id": name,
                "object": "model",
                "created": 0,
                "owned_by": "alias of " + ", ".join(alias.models),
            }
            for name, alias in self.aliases.items()
        ]


def _by_weight(rank: Sequence[Deployment]) -> list[Deployment]:
    """The deployments of one rank in a random order where heavier ones tend to come first: the
    first is chosen with a chance in proportion to its weight, then the next among the rest."""
    left, ordered = list(rank), []
    while len(left) > 1:
        chosen = random.choices(left, weights=[d.weight for d in left])[0]
        ordered.append(chosen)
        left.remove(chosen)
    return ordered + left


class ConnectionOptions(TypedDict):
    """The options every OpenAI-compatible upstream's client is built with, from the settings."""

    connect_timeout: float
    retries: int
    backoff: float
    backoff_max: float
    pool_size: int


def build_router(settings: Settings, secrets: SecretStore, store: Any = None) -> Router:
    """The providers the settings configure, and how model names route to them; `store` (a Redis
    client) shares model groups' cooldowns between processes."""
    where = env_variable(OPENAI_API_KEY)
    if secrets.uses_aws:
        where += f" or the secret {secrets.source_of(OPENAI_API_KEY)}"
    common: ConnectionOptions = {
        "connect_timeout": settings.upstream_connect_timeout,
        "retries": settings.upstream_retries,
        "backoff": settings.upstream_backoff,
        "backoff_max": settings.upstream_backoff_max,
        "pool_size": settings.worker_connections,
    }
    default = OpenAICompatible(
        name=DEFAULT_UPSTREAM,
        base_url=settings.openai_base_url,
        key_provider=lambda: secrets.get(OPENAI_API_KEY),
        missing_key_message=f"No provider key is configured; set {where}.",
        timeout=settings.upstream_timeout,
        **common,
    )
    upstreams = {
        name: _upstream(upstream, settings, secrets, common) for name, upstream in settings.upstreams.items()
    }
    router = Router(
        default=default,
        bedrock=BedrockProvider.from_settings(settings),
        upstreams=upstreams,
        aliases=settings.model_aliases,
        overall_timeout=settings.group_timeout,
        strict_prefixes=urlsplit(settings.openai_base_url).hostname == OPENAI_HOST,
    )
    if store is not None:
        from service.gateway.shared_cooldowns import SharedCooldowns  # redis-py: only with a store (see app)

        router.cooldowns = SharedCooldowns(store, router.grouped(), settings.cooldown_seconds)
    else:
        router.cooldowns = Cooldowns(settings.cooldown_seconds)
    return router


def _upstream(
    upstream: Upstream, settings: Settings, secrets: SecretStore, common: ConnectionOptions
) -> OpenAICompatible:
    if upstream.key_env:
        key_env = upstream.key_env

        def key() -> str | None:
            return settings.source.get(key_env)

        where = upstream.key_env
    else:
        secret = upstream.key_secret or f"{upstream.name}_api_key"

        def key() -> str | None:
            return secrets.get(secret)

        where = env_variable(secret) + (
            f" or the secret {secrets.source_of(secret)}" if secrets.uses_aws else ""
        )
    return OpenAICompatible(
        name=upstream.name,
        prefix=f"{upstream.name}/",
        base_url=upstream.base_url,
        key_provider=key,
        missing_key_message=f"No key is configured for the upstream {upstream.name!r}; set {where}.",
        key_header=upstream.key_header,
        headers=dict(upstream.headers),
        query=dict(upstream.query),
        stream_usage=upstream.stream_usage,
        timeout=upstream.timeout or settings.upstream_timeout,
        **common,
    )
