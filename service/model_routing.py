"""Which provider serves a model: aliases first, then the `bedrock/` prefix.

A model named `bedrock/<model id or inference profile>` is served by Amazon Bedrock; every other
model goes to the OpenAI-compatible upstream. Aliases (setting AIPROXY_MODEL_ALIASES) map a short
name such as `claude` to a full model name of either provider, resolved once (not recursively).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

BEDROCK_PREFIX = "bedrock/"
BEDROCK = "bedrock"
OPENAI = "openai"


def resolve(model: str, aliases: Mapping[str, str]) -> str:
    """The full model name `model` stands for (itself when it is not an alias)."""
    return aliases.get(model, model)


def provider_of(model: str) -> str:
    """`bedrock` for a `bedrock/...` model, else `openai` (the OpenAI-compatible upstream)."""
    return BEDROCK if is_bedrock(model) else OPENAI


def is_bedrock(model: object) -> bool:
    return isinstance(model, str) and model.startswith(BEDROCK_PREFIX) and len(model) > len(BEDROCK_PREFIX)


def bedrock_model_id(model: str) -> str:
    """The id Bedrock knows (model id, inference profile id or ARN) of a `bedrock/...` model."""
    return model.removeprefix(BEDROCK_PREFIX)


def listed_models(aliases: Mapping[str, str], bedrock_models: Iterable[str]) -> list[dict]:
    """OpenAI model objects for the configured Bedrock models and aliases (for GET /v1/models)."""
    entries = [_model(BEDROCK_PREFIX + model_id, "amazon-bedrock") for model_id in bedrock_models]
    entries += [_model(alias, f"alias of {target}") for alias, target in aliases.items()]
    return entries


def _model(model_id: str, owned_by: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by}


def with_listed_models(upstream: object, listed: list[dict]) -> object:
    """The upstream's `/models` answer with `listed` appended (ids it already has are skipped).

    Anything but an OpenAI list object is returned as it is.
    """
    if not listed or not isinstance(upstream, dict) or not isinstance(upstream.get("data"), list):
        return upstream
    known = {model.get("id") for model in upstream["data"] if isinstance(model, dict)}
    return {**upstream, "data": upstream["data"] + [m for m in listed if m["id"] not in known]}
