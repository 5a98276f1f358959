"""Which provider serves a model: aliases first, then prefixes, else the default upstream.

A model name resolves to one or more deployments (a provider and the model id it knows):

- an alias (AIPROXY_MODEL_ALIASES) stands for one model name, or for an ordered list of them
  (a model group: the first is tried first, the next on failure; `service.fallback`);
- `bedrock/<model id>` (or `bedrock.<model id>`, as the original service's clients write it) is
  served by Amazon Bedrock;
- `<name>/<model id>`, where `<name>` is an upstream configured in AIPROXY_UPSTREAMS, goes to that
  upstream as `<model id>`;
- anything else, slashes included (`meta-llama/Llama-3.1-8B`), goes to the default upstream
  (OPENAI_BASE_URL) unchanged.

Alias targets are resolved once (an alias never names another alias).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from service.providers import Provider
from service.providers.bedrock import BedrockProvider
from service.providers.openai_compatible import OpenAICompatible
from service.secrets import OPENAI_API_KEY, SecretStore, env_variable
from service.settings import Settings

BEDROCK = "bedrock"
BEDROCK_PREFIXES = ("bedrock/", "bedrock.")
DEFAULT_UPSTREAM = "openai"  # the name of the upstream at OPENAI_BASE_URL


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
    """Resolves model names to deployments. Built once per app (service.runtime)."""

    def __init__(
        self,
        *,
        default: Provider,
        bedrock: Provider,
        upstreams: Mapping[str, Provider] | None = None,
        aliases: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.default = default
        self.bedrock = bedrock
        self.upstreams = dict(upstreams or {})
        self.aliases = {name: tuple(targets) for name, targets in (aliases or {}).items()}

    def deployments(self, model: str) -> list[Deployment]:
        """The deployments that may serve `model`, in the order to try them."""
        targets = self.aliases.get(model)
        if targets is None:
            return [self.deployment(model)]
        return [self.deployment(target) for target in targets]

    def deployment(self, model: str) -> Deployment:
        """The one deployment a plain model name (not an alias) stands for."""
        model_id = bedrock_model_id(model)
        if model_id is not None:
            return Deployment(self.bedrock, model_id)
        name, slash, rest = model.partition("/")
        if slash and rest and name in self.upstreams:
            return Deployment(self.upstreams[name], rest)
        return Deployment(self.default, model)

    def providers(self) -> Iterable[Provider]:
        """Every OpenAI-compatible upstream, the default first."""
        return [self.default, *self.upstreams.values()]

    def listed_aliases(self) -> list[dict]:
        """OpenAI model objects for the aliases (GET /v1/models)."""
        return [
            {"id": alias, "object": "model", "created": 0, "owned_by": "alias of " + ", ".join(targets)}
            for alias, targets in self.aliases.items()
        ]


def build_router(settings: Settings, secrets: SecretStore) -> Router:
    """The providers the settings configure, and how model names route to them."""
    where = env_variable(OPENAI_API_KEY)
    if secrets.uses_aws:
        where += f" or the secret {secrets.source_of(OPENAI_API_KEY)}"
    default = OpenAICompatible(
        name=DEFAULT_UPSTREAM,
        base_url=settings.openai_base_url,
        key_provider=lambda: secrets.get(OPENAI_API_KEY),
        missing_key_message=f"No provider key is configured; set {where}.",
        connect_timeout=settings.upstream_connect_timeout,
        timeout=settings.upstream_timeout,
        retries=settings.upstream_retries,
        backoff=settings.upstream_backoff,
        backoff_max=settings.upstream_backoff_max,
        pool_size=settings.worker_connections,
    )
    aliases = {name: (target,) for name, target in settings.model_aliases.items()}
    return Router(default=default, bedrock=BedrockProvider.from_settings(settings), aliases=aliases)
