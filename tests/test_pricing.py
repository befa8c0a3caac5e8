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
