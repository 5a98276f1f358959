"""Which provider grades: the same choice POST /assessment makes, outside Flask.

Aliases (AIPROXY_MODEL_ALIASES) are resolved first; a `bedrock/...` model is served by Amazon
Bedrock through the grader's Bedrock `completer`, every other model by the OpenAI-compatible
upstream client. Both clients are built from the same settings and secrets as the server's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service import model_routing
from service.assessment.providers import grading_provider
from service.bedrock.client import BedrockClient
from service.secrets import SecretStore
from service.settings import Settings
from service.upstream import build_client


@dataclass(frozen=True)
class Provider:
    model: str  # the full model name (an alias resolved)
    agent: str  # "openai" or "bedrock", as in the response metadata of POST /assessment
    complete: Callable[[dict], dict]
    location: str  # where answers come from; part of the cache key


def provider_for(model: str, settings: Settings) -> Provider:
    """The route's choice of provider (service.assessment.providers), with clients of our own."""
    secrets = SecretStore(
        settings.source, settings.environment_type, settings.environment, ttl=settings.secrets_ttl
    )
    upstream = build_client(settings, secrets)
    chosen = grading_provider(
        model,
        settings.model_aliases,
        openai=lambda: upstream,
        bedrock=lambda: BedrockClient.from_settings(settings),
    )
    return Provider(chosen.model, chosen.agent, chosen.complete, _location(chosen.agent, settings, upstream))


def _location(agent: str, settings: Settings, upstream) -> str:
    if agent != model_routing.BEDROCK:
        return upstream.base_url
    source = settings.source
    where = (
        source.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
        or source.get("AWS_ENDPOINT_URL")
        or source.get("AWS_REGION")
        or source.get("AWS_DEFAULT_REGION")
        or "default"
    )
    return f"bedrock:{where}"
