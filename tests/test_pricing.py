"""Price table: shipped data, prefix matching, long-prompt rates, batch discount, user overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gembulk.errors import UsageError
from gembulk.pricing import load_prices
from gembulk.records import Usage


def test_shipped_table_is_dated_and_sourced() -> None:
    table = load_prices()
    assert table.date and "ai.google.dev" in table.source
    assert table.batch_discount == 0.5
    assert table.price_for("gemini-2.5-flash") is not None


def test_cost_counts_thinking_as_output() -> None:
    table = load_prices()
    usage = Usage(
        prompt_tokens=1_000_000, output_tokens=500_000, thoughts_tokens=500_000, total_tokens=2_000_000
    )
    assert table.cost("gemini-2.5-flash", usage) == pytest.approx(0.30 + 2.50)
    assert table.cost("gemini-2.5-flash", usage, batch=True) == pytest.approx((0.30 + 2.50) / 2)


def test_long_prompts_use_long_rates() -> None:
    table = load_prices()
    short = Usage(prompt_tokens=200_000, output_tokens=0, thoughts_tokens=0, total_tokens=200_000)
    long = Usage(prompt_tokens=200_001, output_tokens=0, thoughts_tokens=0, total_tokens=200_001)
    assert table.cost("gemini-2.5-pro", short) == pytest.approx(0.25)
    assert table.cost("gemini-2.5-pro", long) == pytest.approx(200_001 * 2.5 / 1e6)


def test_dated_versions_match_their_family_and_unknown_models_have_no_price() -> None:
    table = load_prices()
    assert table.price_for("models/gemini-2.5-flash-preview-09-2025") == table.price_for("gemini-2.5-flash")
    assert table.price_for("gemini-2.5-flash-lite") != table.price_for("gemini-2.5-flash")
    assert table.cost("my-tuned-model", Usage(1, 1, 0, 2)) is None


def test_user_override_adds_and_replaces(tmp_path: Path) -> None:
    override = tmp_path / "prices.json"
    override.write_text(
        json.dumps(
            {
                "date": "2026-11-01",
                "models": {
                    "gemini-2.5-flash": {"input": 1.0, "output": 2.0},
                    "my-model": {"input": 3.0, "output": 4.0},
                },
            }
        )
    )
    table = load_prices(str(override))
    assert table.date == "2026-11-01"
    assert table.cost("gemini-2.5-flash", Usage(1_000_000, 0, 0, 1_000_000)) == pytest.approx(1.0)
    assert table.cost("my-model", Usage(0, 1_000_000, 0, 1_000_000)) == pytest.approx(4.0)
    assert table.price_for("gemini-2.5-pro") is not None  # the rest of the shipped table stays


@pytest.mark.parametrize("content", ["{broken", "[1, 2]", '{"models": {"m": {"inputs": 1}}}'])
def test_bad_override_is_a_usage_error(tmp_path: Path, content: str) -> None:
    override = tmp_path / "p.json"
    override.write_text(content)
    with pytest.raises(UsageError):
        load_prices(str(override))


def test_shipped_table_has_cache_prices_where_google_lists_them() -> None:
    table = load_prices()
    flash = table.price_for("gemini-2.5-flash")
    assert flash is not None and flash.cached_input == 0.03 and flash.cache_storage == 1.0
    pro = table.price_for("gemini-2.5-pro")
    assert pro is not None and (pro.cached_input, pro.cached_input_long, pro.cache_storage) == (
        0.125,
        0.25,
        4.5,
    )
    lite = table.price_for("gemini-2.0-flash-lite")
    assert lite is not None and not lite.supports_caching  # "Not available" on the pricing page


def test_cached_tokens_are_billed_at_the_cached_rate_and_not_batch_discounted() -> None:
    table = load_prices()
    usage = Usage(prompt_tokens=1_000_000, output_tokens=0, cached_tokens=800_000)
    # 200k fresh at 0.30, 800k cached at 0.03.
    assert table.cost("gemini-2.5-flash", usage) == pytest.approx(0.2 * 0.30 + 0.8 * 0.03)
    # The Batch API halves fresh input; cached tokens are "priced the same as for non-batch API traffic".
    assert table.cost("gemini-2.5-flash", usage, batch=True) == pytest.approx(0.2 * 0.15 + 0.8 * 0.03)
    assert table.cache_saving("gemini-2.5-flash", usage) == pytest.approx(0.8 * (0.30 - 0.03))
    assert table.cache_saving("gemini-2.5-flash", usage, batch=True) == pytest.approx(0.8 * (0.15 - 0.03))


def test_cached_tokens_of_a_model_without_cache_prices_cost_as_input() -> None:
    table = load_prices()
    usage = Usage(prompt_tokens=1_000_000, cached_tokens=1_000_000)
    assert table.cost("gemini-2.0-flash-lite", usage) == pytest.approx(0.075)
    assert table.cache_saving("gemini-2.0-flash-lite", usage) == 0.0


def test_long_prompts_use_the_long_cached_rate_and_storage_is_per_hour() -> None:
    pro = load_prices().price_for("gemini-2.5-pro")
    assert pro is not None
    usage = Usage(prompt_tokens=300_000, cached_tokens=250_000)
    assert pro.cost(usage) == pytest.approx((50_000 * 2.5 + 250_000 * 0.25) / 1e6)
    assert pro.storage_cost(100_000, 2.0) == pytest.approx(0.9)
