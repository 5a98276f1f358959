"""What a run's tokens cost, from the server's price table (the shipped one and AIPROXY_PRICES):
at the listed prices, or at the batch prices (the entry's `batch` share, half unless it says
otherwise) when the run went through a batch (`--batch`)."""

from __future__ import annotations

from typing import Any

from service.config.prices import PriceTable, shipped_prices
from service.config.settings import Settings


def price_table(settings: Settings) -> PriceTable:
    return PriceTable({**shipped_prices(), **settings.prices})


def run_cost(
    prices: PriceTable,
    names: list[str],
    usage: dict[str, int],
    fresh_usage: dict[str, int],
    *,
    batch: bool,
) -> dict[str, Any]:
    """`usd` for every answer used (what the run costs with an empty cache), `fresh_usd` for those
    fetched now; both None when none of the model's `names` has a price."""
    share = prices.batch_share(*names) if batch else 1.0

    def usd(tokens: dict[str, int]) -> float | None:
        listed = prices.cost(names, tokens.get("prompt_tokens", 0), tokens.get("completion_tokens", 0))
        return None if listed is None else round(listed * share, 6)

    return {
        "pricing": "batch" if batch else "listed",
        "share": share,
        "usd": usd(usage),
        "fresh_usd": usd(fresh_usage),
    }
