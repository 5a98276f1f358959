"""The price table: what a call costs, found under the names a model goes by."""

import json

import pytest

from service.config.prices import PriceTable, parse_prices, shipped_prices
from service.config.setting import SettingsError
from tests.support.app import make_settings


def test_the_shipped_table_prices_the_common_models():
    table = PriceTable(shipped_prices())
    assert table.price("gpt-4o-mini").input == 0.15
    # Dated and cross-region names find their model's price.
    assert table.price("gpt-4o-mini-2024-07-18") == table.price("gpt-4o-mini")
    assert table.price("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0").output == 15.0
    assert table.price("no-such-model") is None


def test_cost_counts_cached_prompt_tokens_at_their_own_price():
    table = PriceTable(parse_prices({"m": {"input": 2.0, "output": 8.0, "cached_input": 0.5}}, "test"))
    assert table.cost(["m"], 1_000_000, 0) == 2.0
    assert table.cost(["m"], 1_000_000, 500_000, cached=400_000) == pytest.approx(1.2 + 0.2 + 4.0)
    assert table.cost(["unknown", "m"], 1000, 1000) == pytest.approx(0.01)
    assert table.cost(["unknown"], 1000, 1000) is None


def test_aiproxy_prices_adds_and_overrides_entries():
    settings = make_settings(
        AIPROXY_PRICES=json.dumps(
            {"gpt-4o-mini": {"input": 1, "output": 2}, "mine": {"input": 0, "output": 0}}
        )
    )
    table = PriceTable({**shipped_prices(), **settings.prices})
    assert table.price("gpt-4o-mini").input == 1.0
    assert table.price("mine").output == 0.0


@pytest.mark.parametrize("raw", ['{"m": {"input": 1}}', '{"m": {"input": "1", "output": 2}}', "[1]", "{bad"])
def test_a_malformed_price_stops_start_up_with_one_line(raw):
    with pytest.raises(SettingsError) as caught:
        make_settings(AIPROXY_PRICES=raw)
    assert "AIPROXY_PRICES" in str(caught.value) and "\n" not in str(caught.value)


def test_images_audio_and_speech_are_priced_per_unit_and_batches_at_half():
    table = PriceTable(shipped_prices())
    assert table.image_cost(["dall-e-3"], "1024x1792", "hd", 2) == pytest.approx(0.24)
    assert table.image_cost(["dall-e-2"], "512x512", "standard", 1) == pytest.approx(0.018)
    # A quality the table does not list costs as the size's own entry (the dearest).
    assert table.image_cost(["gpt-image-1"], "1024x1024", "auto", 1) == pytest.approx(0.167)
    assert table.audio_cost(["whisper-1"], 90) == pytest.approx(0.009)
    assert table.speech_cost(["tts-1"], 1000) == pytest.approx(0.015)
    assert table.batch_share("gpt-4o-mini") == 0.5
    assert table.image_cost(["gpt-4o-mini"], "1024x1024", "hd", 1) is None


def test_an_entry_may_set_its_own_batch_share_and_unit_prices():
    entries = {"m": {"input": 1, "output": 2, "batch": 0.25}, "w": {"audio_minute": 0.01}}
    table = PriceTable(parse_prices(entries, "t"))
    assert table.batch_share("m") == 0.25
    assert table.audio_cost(["w"], 60) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="'images 1024x1024', USD per image"):
        parse_prices({"i": {"images": {"1024x1024": "cheap"}}}, "t")
