"""The shared context's caching decision: the minimum size, the price arithmetic, --context-cache."""

from __future__ import annotations

import pytest

from gembulk.context.decision import (
    BATCH_HOURS,
    MIN_ONLINE_HOURS,
    decide,
    expected_hours,
    minimum_tokens,
)
from gembulk.pricing import ModelPrice, load_prices
from gembulk.settings import ContextCache

FLASH = ModelPrice(input=0.30, output=2.50, cached_input=0.03, cache_storage=1.0)


def test_minimums_follow_the_caching_page_by_family() -> None:
    assert minimum_tokens("gemini-2.5-flash") == 1024
    assert minimum_tokens("models/gemini-2.5-flash-lite") == 1024
    assert minimum_tokens("gemini-2.5-pro") == 4096
    assert minimum_tokens("gemini-3-pro-preview") == 4096
    assert minimum_tokens("my-tuned-model") == 4096  # unknown: the larger minimum


def test_a_long_context_on_many_requests_is_cached_at_the_documented_prices() -> None:
    # 30,000 tokens on 200 requests of 2.5 Flash, stored for the five minutes a fast run takes:
    # inline 200 x 30,000 x 0.30 = $1.80; cached 200 x 30,000 x 0.03 = $0.18, plus 30,000 x $1.00/h x 1/12 h.
    hours = expected_hours(200, batch=False, rpm=6000)
    assert hours == MIN_ONLINE_HOURS
    decision = decide(ContextCache.AUTO, "gemini-2.5-flash", 30_000, 200, FLASH, hours=hours)
    assert decision.cache and "pays for 200 requests" in decision.reason
    assert decision.inline_cost == pytest.approx(1.80)
    assert decision.cached_cost == pytest.approx(0.18 + 0.03 / 12)


def test_storage_decides_when_requests_are_few() -> None:
    # Break-even on 2.5 Flash: storage $1.00/M/h against a saving of $0.27/M per request: ~4 requests an hour.
    slow = decide(ContextCache.AUTO, "gemini-2.5-flash", 30_000, 3, FLASH, hours=1.0)
    assert not slow.cache and "would not pay for 3 requests" in slow.reason
    assert decide(ContextCache.AUTO, "gemini-2.5-flash", 30_000, 4, FLASH, hours=1.0).cache


def test_a_batch_halves_inline_input_but_not_cached_reads_and_stores_for_a_day() -> None:
    hours = expected_hours(500, batch=True)
    assert hours == BATCH_HOURS
    # Inline in a batch: 0.15/M a token; cached 0.03/M plus 24 h of storage: pays above 200 requests.
    assert not decide(
        ContextCache.AUTO, "gemini-2.5-flash", 30_000, 190, FLASH, hours=hours, batch_factor=0.5
    ).cache
    assert decide(
        ContextCache.AUTO, "gemini-2.5-flash", 30_000, 210, FLASH, hours=hours, batch_factor=0.5
    ).cache


@pytest.mark.parametrize(
    ("mode", "model", "tokens", "price", "cache", "reason"),
    [
        (ContextCache.OFF, "gemini-2.5-flash", 30_000, FLASH, False, "--context-cache off"),
        (ContextCache.ON, "gemini-2.5-flash", 30_000, None, True, "--context-cache on"),
        (ContextCache.ON, "gemini-2.5-flash", 500, FLASH, False, "under gemini-2.5-flash's caching minimum"),
        (ContextCache.AUTO, "gemini-2.5-pro", 2_000, FLASH, False, "2,000 tokens, under gemini-2.5-pro's"),
        (ContextCache.AUTO, "my-model", 30_000, None, False, "no price is known for my-model"),
        (
            ContextCache.AUTO,
            "gemini-2.0-flash-lite",
            30_000,
            ModelPrice(input=0.075, output=0.30),
            False,
            "no context-caching price",
        ),
    ],
)
def test_mode_minimum_and_unknown_prices(
    mode: ContextCache, model: str, tokens: int, price: ModelPrice | None, cache: bool, reason: str
) -> None:
    decision = decide(mode, model, tokens, 1000, price, hours=1.0)
    assert decision.cache is cache and reason in decision.reason


def test_the_shipped_pro_prices_use_the_long_rates_above_200k() -> None:
    pro = load_prices().price_for("gemini-2.5-pro")
    decision = decide(ContextCache.AUTO, "gemini-2.5-pro", 300_000, 10, pro, hours=1.0)
    assert decision.inline_cost == pytest.approx(10 * 300_000 * 2.5 / 1e6)
    assert decision.cached_cost == pytest.approx(10 * 300_000 * 0.25 / 1e6 + 300_000 * 4.5 / 1e6)
    assert decision.cache
