"""AIPROXY_MODEL_ALIASES: short model names, each for one model or for a model group, parsed once
at start-up into `ModelAlias` values (docs/routing.md, "Model groups and fallback").

A group is an ordered list of ranks, tried in turn when one fails; a rank is a model, or a list of
models of equal rank, optionally weighted (`{"model": "azure/gpt-4o", "weight": 3}`), among which
the load is spread by weight. A target may also be limited by where the request comes from:
`{"model": "vertex/gemini-2.5-flash", "regions": ["US"]}` serves only requests from those countries
(ISO 3166-1 alpha-2 codes), `"exclude_regions": [...]` all but those. Which provider serves each
model is `service.gateway.routing`'s; the request's region is the edge's (docs/routing.md).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from service.config.setting import SettingsError

_EXAMPLE = '{"claude": "bedrock/<model id>", "grader": ["azure/gpt-4o", "gpt-4o"]}'
_TARGET_FIELDS = {"model", "weight", "regions", "exclude_regions"}
REGION = re.compile(r"[A-Z]{2}")  # an ISO 3166-1 alpha-2 country code, upper case


@dataclass(frozen=True)
class ModelTarget:
    """A model an alias stands for, and its share of the load within its rank."""

    model: str
    weight: float = 1.0
    regions: frozenset[str] | None = None  # serves only requests from these countries (None: any)
    exclude_regions: frozenset[str] = frozenset()  # serves no request from these

    def serves(self, region: str | None) -> bool:
        """Whether a request from `region` (None: unknown) may use this target."""
        if self.regions is not None:
            return region is not None and region in self.regions
        return region not in self.exclude_regions


@dataclass(frozen=True)
class ModelAlias:
    """What an alias stands for: ranks tried in turn, each of targets of equal rank (one rank of
    one target for a plain alias)."""

    ranks: tuple[tuple[ModelTarget, ...], ...]

    @property
    def models(self) -> list[str]:
        """Every model of the alias, rank by rank."""
        return [target.model for rank in self.ranks for target in rank]


def parse_model_aliases(name: str, raw: str) -> dict[str, ModelAlias]:
    """The aliases of the setting `name`'s JSON text; SettingsError with one line when malformed."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    aliases = _aliases(data)
    if aliases is None:
        raise SettingsError(
            f"{name} is not valid; use a JSON object of names to a model or an ordered list of models, "
            f"e.g. {_EXAMPLE}"
        )
    return aliases


def _aliases(data: Any) -> dict[str, ModelAlias] | None:
    if not isinstance(data, dict):
        return None
    aliases = {}
    for alias, value in data.items():
        parsed = _alias(value)
        if not alias.strip() or parsed is None:
            return None
        aliases[alias.strip()] = parsed
    return aliases


def _alias(value: Any) -> ModelAlias | None:
    """One model, or a model group: a non-empty list of ranks, each a model or a non-empty list of them."""
    if isinstance(value, str):
        target = _target(value)
        return None if target is None else ModelAlias(((target,),))
    if not isinstance(value, list) or not value:
        return None
    ranks = []
    for rank in value:
        targets = [_target(item) for item in rank] if isinstance(rank, list) and rank else [_target(rank)]
        if any(target is None for target in targets):
            return None
        ranks.append(tuple(target for target in targets if target is not None))
    return ModelAlias(tuple(ranks))


def _target(item: Any) -> ModelTarget | None:
    """A model name, or a model with a weight and regions:
    `{"model": "<name>", "weight": 3, "regions": ["US"]}`."""
    if isinstance(item, str):
        return ModelTarget(item.strip()) if item.strip() else None
    if not isinstance(item, dict) or not set(item) <= _TARGET_FIELDS:
        return None
    regions, excluded = _regions(item.get("regions")), _regions(item.get("exclude_regions"))
    if item.get("regions") is not None and not regions:
        return None
    if item.get("exclude_regions") is not None and excluded is None:
        return None
    if regions and excluded:
        return None  # one or the other: "only these" already excludes the rest
    model, weight = item.get("model"), item.get("weight", 1)
    if not isinstance(model, str) or not model.strip():
        return None
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
        return None
    return ModelTarget(model.strip(), float(weight), regions, excluded or frozenset())


def _regions(value: Any) -> frozenset[str] | None:
    """A list of country codes as a set (upper-cased), or None when absent or not such a list."""
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        return None
    codes = frozenset(code.strip().upper() for code in value)
    return codes if all(REGION.fullmatch(code) for code in codes) else None
