"""What a provider call cost in US dollars, from a price table.

The table ships with the service (`service/config/data/prices.json`: USD per million input and output
tokens, and cached input where the provider prices it) and AIPROXY_PRICES adds or overrides
entries in the same shape. A call is looked up by the name it was routed by (`azure/my-deployment`,
`bedrock/us.amazon.nova-lite-v1:0`), then by the model id the provider knows, then by that id
without a date suffix (`gpt-4o-mini-2024-07-18`) or a Bedrock cross-region prefix (`us.`).

A model with no price costs nothing known. A client with a budget may not use it: its requests are
refused before anything is sent (400 `model_not_priced`: `service.gateway.fallback`), so a budget is never
bypassed silently; clients without a budget use it as before, and usage records show no `cost_usd`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files

from service.config.setting import SettingsError

_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_BEDROCK_REGION = re.compile(r"^(us|eu|apac|us-gov|global|jp|au|ca)\.")
_PREFIX = "bedrock/"


@dataclass(frozen=True)
class Price:
    input: float  # USD per million prompt tokens
    output: float  # USD per million completion tokens
    cached_input: float | None = None  # USD per million prompt tokens read from the provider's cache


def parse_prices(data: object, where: str) -> dict[str, Price]:
    """A price table from JSON data `{"<model>": {"input": ..., "output": ..., "cached_input": ...}}`;
    ValueError naming the entry at fault."""
    if not isinstance(data, dict):
        raise ValueError(
            f'{where} must be a JSON object like {{"<model>": {{"input": 0.15, "output": 0.6}}}}'
        )
    table = {}
    for model, entry in data.items():
        if model.startswith("_"):
            continue  # notes
        if not isinstance(entry, dict) or set(entry) - {"input", "output", "cached_input"}:
            raise ValueError(f"{where}: {model!r} must be an object of input, output and cached_input prices")
        values = {}
        for field in ("input", "output", "cached_input"):
            value = entry.get(field)
            if value is None and field == "cached_input":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1_000_000:
                raise ValueError(f"{where}: {model!r} needs {field!r}, USD per million tokens (a number)")
            values[field] = float(value)
        table[model] = Price(**values)
    return table


def prices_setting(name: str, raw: str) -> dict[str, Price]:
    """The prices of the setting `name` (AIPROXY_PRICES): JSON text in the shipped table's shape."""
    if not raw:
        return {}
    try:
        return parse_prices(json.loads(raw), name)
    except ValueError as error:  # not JSON, or an entry that is not a price
        message = str(error) if str(error).startswith(name) else f"{name} is not valid JSON"
        raise SettingsError(message.splitlines()[0]) from None


def shipped_prices() -> dict[str, Price]:
    text = files("service.config.data").joinpath("prices.json").read_text(encoding="utf-8")
    return parse_prices(json.loads(text), "service/config/data/prices.json")


class PriceTable:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self.prices = dict(prices)

    def price(self, *names: str | None) -> Price | None:
        for name in _candidates(names):
            found = self.prices.get(name)
            if found is not None:
                return found
        return None

    def cost(
        self, names: Iterable[str | None], prompt: int, completion: int, cached: int = 0
    ) -> float | None:
        """USD for a call, or None when none of `names` has a price."""
        price = self.price(*names)
        if price is None:
            return None
        cached = min(max(0, cached), prompt)
        cached_rate = price.input if price.cached_input is None else price.cached_input
        dollars = ((prompt - cached) * price.input + cached * cached_rate + completion * price.output) / 1e6
        return round(dollars, 8)


def _candidates(names: Iterable[str | None]) -> Iterable[str]:
    for name in names:
        if not name:
            continue
        yield name
        bare = name.removeprefix(_PREFIX)
        if bare != name:
            yield bare
        regional = _BEDROCK_REGION.sub("", bare)
        if regional != bare:
            yield regional
        undated = _DATE_SUFFIX.sub("", bare)
        if undated != bare:
            yield undated
