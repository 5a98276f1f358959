"""Which provider grades: the same choice POST /assessment makes, outside the server.

The router is built from the same settings and secrets as the server's (`service.gateway.routing`), so
aliases, model groups and prefixes resolve as they do for a request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service.assessment.providers import Grading
from service.config.secrets import SecretStore
from service.config.settings import Settings
from service.gateway.routing import Deployment, build_router


@dataclass(frozen=True)
class Provider:
    model: str  # the full model name (an alias resolved)
    agent: str  # "openai" or "bedrock", as in the response metadata of POST /assessment
    complete: Callable[[dict[str, Any]], dict[str, Any]]
    location: str  # where answers come from; part of the cache key
    deployment: Deployment  # the first that serves the model: where a batch (`--batch`) goes


def provider_for(model: str, settings: Settings) -> Provider:
    """The route's choice of provider (service.assessment.providers), with clients of our own."""
    secrets = SecretStore(
        settings.source, settings.environment_type, settings.environment, ttl=settings.secrets_ttl
    )
    grading = Grading(build_router(settings, secrets), model)
    first = grading.deployments[0]
    return Provider(grading.model, first.provider.agent, grading, first.provider.location, first)
