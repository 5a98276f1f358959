"""What a provider call cost in US dollars, from a price table.

The table ships with the service (`service/config/data/prices.json`: USD per million input and output
tokens, and cached input where the provider prices it; per image by quality and size for image
models, per minute of audio for transcription models, per million characters for speech models;
a Batch API request at `batch` times these, half unless an entry says otherwise) and
AIPROXY_PRICES adds or overrides entries in the same shape. A call is looked up by the name it
was routed by (`azure/my-deployment`, `bedrock/us.amazon.nova-lite-v1:0`), then by the model id
the provider knows, then by that id
without a date suffix (`gpt-4o-mini-2024-07-18`) or a Bedrock cross-region prefix (`us.`).

A model with no price costs nothing known. A client with a budget may not use it: its requests are
refused before anything is sent (400 `model_not_priced`: `service.gateway.fallback`), so a budget is never
bypassed silently; clients without a budget use it as before, and usage records show no `cost_usd`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any

from service.config.setting import SettingsError

_DATE_SUFFIX = re.compile(r"-\d{4}-\d{2}-\d{2}$")
_BEDROCK_REGION = re.compile(r"^(us|eu|apac|us-gov|global|jp|au|ca)\.")
_PREFIX = "bedrock/"


# OpenAI's Batch API costs half the listed price; an entry's `batch` says otherwise.
BATCH_SHARE = 0.5
_TOKEN_FIELDS = ("input", "output", "cached_input")
_UNIT_FIELDS = ("audio_minute", "characters", "batch")
_FIELDS = {*_TOKEN_FIELDS, *_UNIT_FIELDS, "images"}


@dataclass(frozen=True)
class Price:
    input: float = 0.0  # USD per million prompt tokens
    output: float = 0.0  # USD per million completion tokens
    cached_input: float | None = None  # USD per million prompt tokens read from the provider's cache
    # USD per image, by `<quality>/<size>` or `<size>` (image models).
    images: Mapping[str, float] = field(default_factory=dict)
    audio_minute: float | None = None  # USD per minute of audio (transcription models)
    characters: float | None = None  # USD per million characters of input (speech models)
    batch: float = BATCH_SHARE  # the share of these prices a Batch API request costs


def _number(where: str, model: str, what: str, value: object, unit: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1_000_000:
        raise ValueError(f"{where}: {model!r} needs {what!r}, {unit} (a number)")
    return float(value)


def _price(where: str, model: str, entry: object) -> Price:
    if not isinstance(entry, dict) or set(entry) - _FIELDS:
        raise ValueError(
            f"{where}: {model!r} must be an object of input, output and cached_input prices "
            "(or images, audio_minute, characters; and batch)"
        )
    unit_priced = any(name in entry for name in ("images", "audio_minute", "characters"))
    values: dict[str, Any] = {}
    for name in _TOKEN_FIELDS:
        value = entry.get(name)
        if value is None and (name == "cached_input" or unit_priced):
            continue
        values[name] = _number(where, model, name, value, "USD per million tokens")
    if unit_priced and ("input" in values) != ("output" in values):
        raise ValueError(f"{where}: {model!r} needs both 'input' and 'output', or neither")
    for name in ("audio_minute", "characters"):
        if name in entry:
            unit = "USD per minute" if name == "audio_minute" else "USD per million characters"
            values[name] = _number(where, model, name, entry[name], unit)
    if "batch" in entry:
        values["batch"] = _number(where, model, "batch", entry["batch"], "the share a batch costs")
    if "images" in entry:
        images = entry["images"]
        if not isinstance(images, dict) or not images:
            raise ValueError(f'{where}: {model!r} needs "images" as {{"<quality>/<size>": USD per image}}')
        values["images"] = {
            str(kind): _number(where, model, f"images {kind}", value, "USD per image")
            for kind, value in images.items()
        }
    return Price(**values)


def parse_prices(data: object, where: str) -> dict[str, Price]:
    """A price table from JSON data `{"<model>": {"input": ..., "output": ..., "cached_input": ...}}`
    (image, audio and speech models: `images`, `audio_minute`, `characters`); ValueError naming the
    entry at fault."""
    if not isinstance(data, dict):
        raise ValueError(
            f'{where} must be a JSON object like {{"<model>": {{"input": 0.15, "output": 0.6}}}}'
        )
    return {model: _price(where, model, entry) for model, entry in data.items() if not model.startswith("_")}


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


# Model names looked up (a request's deployment and model) whose price is remembered: bounded, as
# a client may send any name.
MAX_REMEMBERED = 1024


class PriceTable:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self.prices = dict(prices)
        self._found: dict[tuple[str | None, ...], Price | None] = {}

    def price(self, *names: str | None) -> Price | None:
        """The price of the first of `names` (or of its bare, regionless or undated form) listed."""
        if names in self._found:
            return self._found[names]
        found = None
        for name in _candidates(names):
            found = self.prices.get(name)
            if found is not None:
                break
        if len(self._found) < MAX_REMEMBERED:
            self._found[names] = found
        return found

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

    def image_cost(self, names: Iterable[str | None], size: str, quality: str, count: int) -> float | None:
        """USD for `count` images of `size` and `quality` (`<quality>/<size>` in the table, else
        `<size>`, else the model's only or `default` entry); None when none is priced."""
        price = self.price(*names)
        if price is None or not price.images:
            return None
        images = price.images
        each = images.get(f"{quality}/{size}", images.get(size, images.get("default")))
        if each is None and len(images) == 1:
            each = next(iter(images.values()))
        return None if each is None else round(each * count, 8)

    def audio_cost(self, names: Iterable[str | None], seconds: float) -> float | None:
        """USD for `seconds` of audio; None when the model has no price per minute."""
        price = self.price(*names)
        if price is None or price.audio_minute is None:
            return None
        return round(price.audio_minute * seconds / 60, 8)

    def speech_cost(self, names: Iterable[str | None], characters: int) -> float | None:
        """USD for speaking `characters` characters; None when the model has no such price."""
        price = self.price(*names)
        if price is None or price.characters is None:
            return None
        return round(price.characters * characters / 1e6, 8)

    def batch_share(self, *names: str | None) -> float:
        """The share of the listed price a Batch API request of the model costs."""
        price = self.price(*names)
        return BATCH_SHARE if price is None else price.batch


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
