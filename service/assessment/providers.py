"""Which provider grades a model: one choice shared by POST /assessment and the accuracy lab.

Aliases (AIPROXY_MODEL_ALIASES) are resolved first; a `bedrock/...` model is served by Amazon
Bedrock, every other model by the OpenAI-compatible upstream. Callers pass the clients (the app's
own in a request, fresh ones in the command-line tool), so this module needs no Flask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service import model_routing
from service.bedrock.client import BedrockClient, completer
from service.upstream import UpstreamClient


@dataclass(frozen=True)
class GradingProvider:
    model: str  # the full model name, alias resolved
    agent: str  # "openai" or "bedrock": metadata.agent of the answer
    complete: Callable[[dict], dict]  # the grader's seam: chat-completions body -> response JSON


def grading_provider(
    model: str,
    aliases: Mapping[str, str],
    *,
    openai: Callable[[], UpstreamClient],
    bedrock: Callable[[], BedrockClient],
    api_key: str | None = None,
) -> GradingProvider:
    """The provider for `model`; `api_key` (the caller's provider key) applies to the upstream only."""
    model = model_routing.resolve(model, aliases)
    if model_routing.provider_of(model) == model_routing.BEDROCK:
        return GradingProvider(model, model_routing.BEDROCK, completer(bedrock(), model))
    client = openai()

    def complete(body: dict) -> dict:
        return client.chat_completion({**body, "model": model}, api_key=api_key)

    return GradingProvider(model, model_routing.OPENAI, complete)
