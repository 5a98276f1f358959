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

Alias targets are resolved once (an alias never names another alias). A target limited to some
regions (`"regions": ["US"]`, `"exclude_regions"`) is left out of a request from elsewhere: its
region is on the request's state (`RequestState.region`, set at the edge), and a request whose
region is unknown is served only by targets without `regions`.

A Vertex AI upstream (`"type": "vertex"`) names Google's models with their publisher
(`google/gemini-2.5-flash`); `vertex/gemini-2.5-flash` is sent as that.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict
from urllib.parse import urlsplit

from service.config.model_aliases import ModelAlias, ModelTarget
from service.config.secrets import OPENAI_API_KEY, SecretStore, env_variable
from service.config.setting import SettingsError
from service.config.settings import Settings
from service.config.upstreams import Upstream
from service.core import request_state
from service.core.errors import ProviderKeyMissing, RequestRejected
from service.gateway.cooldowns import Cooldowns
from service.gateway.credentials import chosen
from service.gateway.providers import Provider
from service.gateway.providers.bedrock import BedrockProvider
from service.gateway.providers.openai import OpenAICompatible
from service.gateway.providers.vertex import AccessToken, AccessTokens

BEDROCK_PREFIXES = ("bedrock/", "bedrock.")
DEFAULT_UPSTREAM = "openai"  # the name of the upstream at OPENAI_BASE_URL
OPENAI_HOST = "api.openai.com"
VERTEX_PUBLISHER = "google/"  # the publisher of a Vertex model named without one
ANY_REGION = ModelTarget("")  # what a deployment outside a model group serves: every region


@dataclass(frozen=True)
class Deployment:
    """A model as one provider serves it."""

    provider: Provider
    model: str  # the id the provider knows (routing prefix removed)
    weight: float = 1.0
    target: ModelTarget = ANY_REGION  # the model group's entry: which regions it serves

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
        publishers: Mapping[str, str] | None = None,
    ) -> None:
        self.default = default
        self.bedrock = bedrock
        self.upstreams = dict(upstreams or {})
        # Upstreams whose model ids name a publisher, and the one a bare id gets (Vertex: google/).
        self.publishers = dict(publishers or {})
        self.aliases = dict(aliases or {})
        self.cooldowns = Cooldowns(0)  # build_router sets the configured ones
        self.overall_timeout = overall_timeout  # a model group tries deployments within this
        self.strict_prefixes = strict_prefixes  # unknown `<name>/...` is a 400 (the default is OpenAI)
        # Each alias's deployments, rank by rank, resolved here once (every target must route
        # somewhere); a request only orders them.
        self.groups = {
            name: [
                [self.deployment(target.model, target, where=f"alias {name!r}") for target in rank]
                for rank in alias.ranks
            ]
            for name, alias in self.aliases.items()
        }

    def deployments(self, model: str) -> list[Deployment]:
        """The deployments that may serve `model` for the current request (its region), in the
        order to try them."""
        group = self.groups.get(model)
        if group is None:
            return [self.deployment(model)]
        state = request_state.current()
        region = state.region if state is not None else None
        ordered: list[Deployment] = []
        for rank in group:
            ordered += _by_weight([d for d in rank if d.target.serves(region)])
        if not ordered:
            where = f"region {region!r}" if region else "requests whose region is unknown"
            raise RequestRejected(
                f"Model {model!r} has no deployment that serves {where}.",
                status=403,
                param="model",
                code="model_not_available_in_region",
            )
        return ordered

    def deployment(
        self, model: str, target: ModelTarget = ANY_REGION, *, where: str | None = None
    ) -> Deployment:
        """The one deployment a plain model name (not an alias) stands for."""
        model_id = bedrock_model_id(model)
        if model_id is not None:
            return Deployment(self.bedrock, model_id, target.weight, target)
        name, slash, rest = model.partition("/")
        if slash and rest and name in self.upstreams:
            if name in self.publishers and "/" not in rest:
                rest = self.publishers[name] + rest
            return Deployment(self.upstreams[name], rest, target.weight, target)
        if slash and self.strict_prefixes:
            configured = ", ".join(sorted(self.upstreams)) or "none"
            message = (
                f"Model {model!r} names the upstream {name!r}, which is not configured "
                f"(upstreams: bedrock, {configured}); the default upstream, OpenAI, has no model with a '/'."
            )
            if where is not None:
                raise SettingsError(f"AIPROXY_MODEL_ALIASES: {where}: {message}")
            raise RequestRejected(message, param="model", code="model_not_found")
        return Deployment(self.default, model, target.weight, target)

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

    def secret_where(name: str) -> str:
        return env_variable(name) + (f" or the secret {secrets.source_of(name)}" if secrets.uses_aws else "")

    where = secret_where(OPENAI_API_KEY)
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
        key_provider=_key_of(DEFAULT_UPSTREAM, OPENAI_API_KEY, secrets.get, secret_where),
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
        publishers={name: VERTEX_PUBLISHER for name, u in settings.upstreams.items() if u.type == "vertex"},
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
    """The provider of one named upstream; its key is the credential the request's client names
    for it (`upstream_credentials`), else the upstream's own (`Upstream.default_credential`)."""
    default = upstream.default_credential

    def where(credential: str) -> str:
        if credential == upstream.key_env:
            return credential
        return env_variable(credential) + (
            f" or the secret {secrets.source_of(credential)}" if secrets.uses_aws else ""
        )

    def read(credential: str) -> str | None:
        if credential == upstream.key_env:
            return settings.source.get(credential)
        return secrets.get(credential)

    if upstream.type == "vertex":
        tokens = AccessTokens(
            lambda credential: AccessToken(
                lambda: read(credential), provider=upstream.name, where=where(credential)
            )
        )

        def key() -> str | None:
            return tokens.token(chosen(upstream.name, default))

        key_header = "Authorization"
    else:
        key = _key_of(upstream.name, default, read, where)
        key_header = upstream.key_header
    return OpenAICompatible(
        name=upstream.name,
        prefix=f"{upstream.name}/",
        base_url=upstream.base_url,
        key_provider=key,
        missing_key_message=f"No key is configured for the upstream {upstream.name!r}; set {where(default)}.",
        key_header=key_header,
        headers=dict(upstream.headers),
        query=dict(upstream.query),
        stream_usage=upstream.stream_usage,
        timeout=upstream.timeout or settings.upstream_timeout,
        **common,
    )


def _key_of(
    upstream: str, default: str, read: Callable[[str], str | None], where: Callable[[str], str]
) -> Callable[[], str | None]:
    """The key provider of an upstream with keys: the chosen credential's value. A client's own
    credential that is unset is named (never its value); the upstream's own keeps its message."""

    def key() -> str | None:
        credential = chosen(upstream, default)
        value = read(credential)
        if value is None and credential != default:
            raise ProviderKeyMissing(
                f"The credential {credential!r} your client key names for the upstream {upstream!r} "
                f"is not set; the proxy's operators set it as {where(credential)}.",
                provider=upstream,
            )
        return value

    return key
