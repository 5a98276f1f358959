"""Which provider grades: the same choice POST /assessment makes, outside Flask.

Aliases (AIPROXY_MODEL_ALIASES) are resolved first; a `bedrock/...` model is served by Amazon
Bedrock through the grader's Bedrock `completer`, every other model by the OpenAI-compatible
upstream client. Both clients are built from the same settings and secrets as the server's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from service import model_routing
from service.bedrock.client import BedrockClient, completer
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
    model = model_routing.resolve(model, settings.model_aliases)
    if model_routing.is_bedrock(model):
        source = settings.source
        where = (
            source.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME")
            or source.get("AWS_ENDPOINT_URL")
            or source.get("AWS_REGION")
            or source.get("AWS_DEFAULT_REGION")
            or "default"
        )
        client = BedrockClient.from_settings(settings)
        return Provider(model, model_routing.BEDROCK, completer(client, model), f"bedrock:{where}")
    secrets = SecretStore(
        settings.source, settings.environment_type, settings.environment, ttl=settings.secrets_ttl
    )
    upstream = build_client(settings, secrets)
    return Provider(model, model_routing.OPENAI, upstream.chat_completion, upstream.base_url)
