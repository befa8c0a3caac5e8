"""Scheduler: cool-down, learning request and token quotas from 429s, calibration; on a manual clock."""

from __future__ import annotations

import itertools

import pytest

from gembulk.records import CallFailed, QuotaViolation, Usage
from gembulk.scheduler import (
    CALIBRATION_SAMPLE,
    OBSERVED_SAFETY,
    QUOTA_SAFETY,
    TOKEN_BACKOFF,
    TOKEN_FLOOR,
    TOKEN_RECOVERY,
    USER_RATE_SAFETY,
    Limits,
    Scheduler,
)
from gembulk.stats import RunStats
from gembulk.tokens import TokenEstimate
from tests.clock import FakeClock


def make(limits: Limits | None = None) -> tuple[Scheduler, FakeClock, RunStats]:
    clock = FakeClock()
    stats = RunStats()
    scheduler = Scheduler(
        limits or Limits(concurrency=8), stats, clock=clock, sleep=clock.sleep, rng=lambda: 0.0
    )
    return scheduler, clock, stats


def rate_limited(delay: float | None = 2.0, *violations: QuotaViolation) -> CallFailed:
    return CallFailed("RESOURCE_EXHAUSTED", "quota", code=429, retry_delay=delay, violations=violations)


async def test_429_pauses_the_whole_pool_for_the_server_delay() -> None:
    scheduler, clock, stats = make()
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(2.0))
    t0 = clock.now
    async with scheduler.slot():
        pass
    assert clock.now - t0 == pytest.approx(2.0, abs=0.3)
    assert stats.rate_limited == 1


async def test_429_halves_concurrency_once_per_burst() -> None:
    scheduler, _, stats = make(Limits(concurrency=16))
    tickets = []
    for _ in range(5):
        async with scheduler.slot() as ticket:
            tickets.append(ticket)
    for ticket in tickets:
        scheduler.on_failure(ticket, rate_limited(0.1))
    assert scheduler.concurrency.limit == 8
    assert stats.concurrency == 8


async def test_announced_per_minute_quota_sets_the_pace() -> None:
    scheduler, clock, stats = make()
    async with scheduler.slot() as ticket:
        scheduler.on_failure(
            ticket, rate_limited(1.0, QuotaViolation("GenerateRequestsPerMinutePerProjectPerModel", 1200))
        )
    assert scheduler.pace().requests.per_minute == pytest.approx(1200 * QUOTA_SAFETY)
    assert stats.learned_rpm == pytest.approx(1200 * QUOTA_SAFETY)
    starts = []
    for _ in range(5):
        async with scheduler.slot():
            starts.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([60 / (1200 * QUOTA_SAFETY)] * 4)


async def test_user_rpm_is_never_exceeded_by_a_learned_quota() -> None:
    scheduler, _, _ = make(Limits(concurrency=8, rpm=100))
    async with scheduler.slot() as ticket:
        scheduler.on_failure(
            ticket, rate_limited(1.0, QuotaViolation("GenerateRequestsPerMinutePerProjectPerModel", 5000))
        )
    assert scheduler.pace().requests.per_minute == pytest.approx(100 * USER_RATE_SAFETY)


async def test_announced_token_quota_paces_tokens() -> None:
    scheduler, _, _ = make()
    violation = QuotaViolation("GenerateContentInputTokensPerModelPerMinute-FreeTier", 250_000)
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(1.0, violation))
    assert scheduler.pace().tokens.per_minute == pytest.approx(250_000 * QUOTA_SAFETY)
    assert scheduler.pace().requests.per_minute is None


async def test_without_announced_quota_the_rate_settles_under_the_admitted_rate() -> None:
    scheduler, clock, stats = make()
    for _ in range(20):  # 20 successes over 10 s: 2 per second admitted
        async with scheduler.slot() as ticket:
            scheduler.on_success(ticket)
        clock.advance(0.5)
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(None))
    assert scheduler.pace().requests.per_minute == pytest.approx(20 / 10 * 60 * OBSERVED_SAFETY, rel=0.1)
    assert stats.learned_rpm is not None


async def test_inferred_rate_is_probed_upwards_after_quiet_periods() -> None:
    scheduler, clock, _ = make()
    for _ in range(10):
        async with scheduler.slot() as ticket:
            scheduler.on_success(ticket)
        clock.advance(1.0)
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(None))
    learned = scheduler.pace().requests.per_minute
    assert learned is not None
    clock.advance(6.0)
    async with scheduler.slot() as ticket:
        scheduler.on_success(ticket)
    assert scheduler.pace().requests.per_minute == pytest.approx(learned * 1.1)


async def test_429_without_retry_info_backs_off_exponentially() -> None:
    scheduler, clock, _ = make()
    pauses = []
    for _ in range(3):
        async with scheduler.slot() as ticket:
            start = clock.now
            scheduler.on_failure(ticket, rate_limited(None))
        async with scheduler.slot():
            pauses.append(clock.now - start)
    assert pauses == pytest.approx([1.0, 2.0, 4.0], abs=0.3)


async def test_503_reduces_concurrency_without_pausing() -> None:
    scheduler, clock, _ = make(Limits(concurrency=8))
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, CallFailed("UNAVAILABLE", "overloaded", code=503))
    t0 = clock.now
    async with scheduler.slot():
        pass
    assert scheduler.concurrency.limit == 4
    assert clock.now == t0


async def test_non_adaptive_keeps_concurrency_but_still_cools_down() -> None:
    scheduler, clock, _ = make(Limits(concurrency=8, adaptive=False))
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(3.0))
    t0 = clock.now
    async with scheduler.slot():
        pass
    assert scheduler.concurrency.limit == 8
    assert clock.now - t0 == pytest.approx(3.0, abs=0.4)


async def test_slot_counts_in_flight_and_requests() -> None:
    scheduler, _, stats = make()
    async with scheduler.slot():
        assert stats.in_flight == 1
    assert stats.in_flight == 0
    assert stats.requests == 1


async def test_user_rpm_is_paced_a_hair_under() -> None:
    scheduler, clock, _ = make(Limits(concurrency=8, rpm=600))
    starts = []
    for _ in range(3):
        async with scheduler.slot():
            starts.append(clock.now)
    assert starts[2] - starts[1] == pytest.approx(0.1 / USER_RATE_SAFETY)


# -- input tokens -----------------------------------------------------------------------------------

TPM_QUOTA = QuotaViolation(
    "GenerateContentInputTokensPerModelPerMinute",
    36_000,
    "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count",
)
RPM_QUOTA = QuotaViolation(
    "GenerateRequestsPerMinutePerProjectPerModel",
    1200,
    "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
)


def test_quota_violations_tell_tokens_from_requests_by_metric_then_id() -> None:
    assert TPM_QUOTA.tokens and TPM_QUOTA.per_minute and not TPM_QUOTA.per_day
    assert not RPM_QUOTA.tokens
    free_tier = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
    assert QuotaViolation("GenerateContentInputTokensPerModelPerMinute-FreeTier", None, free_tier).tokens
    assert QuotaViolation("GenerateContentInputTokensPerModelPerMinute-FreeTier").tokens  # no metric
    assert not QuotaViolation("GenerateRequestsPerDayPerProjectPerModel").tokens


def usage(prompt_tokens: int) -> Usage:
    return Usage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)


async def test_a_token_429_paces_tokens_without_halving_concurrency() -> None:
    scheduler, _, stats = make(Limits(concurrency=16))
    async with scheduler.slot("m", TokenEstimate(100)) as ticket:
        scheduler.on_failure(ticket, rate_limited(1.0, TPM_QUOTA))
    pace = scheduler.pace("m")
    assert pace.tokens.per_minute == pytest.approx(36_000 * QUOTA_SAFETY)
    assert pace.requests.per_minute is None
    assert scheduler.concurrency.limit == 16 and stats.concurrency == 16


async def test_a_request_429_still_halves_concurrency_and_paces_requests() -> None:
    scheduler, _, _ = make(Limits(concurrency=16))
    async with scheduler.slot("m", TokenEstimate(100)) as ticket:
        scheduler.on_failure(ticket, rate_limited(1.0, RPM_QUOTA))
    assert scheduler.concurrency.limit == 8
    assert scheduler.pace("m").requests.per_minute == pytest.approx(1200 * QUOTA_SAFETY)
    assert scheduler.pace("m").tokens.per_minute is None


async def test_tokens_are_reserved_then_settled_with_the_servers_count() -> None:
    scheduler, _, _ = make(Limits(concurrency=8, tpm=60_000))
    window = scheduler.pace("m").tokens
    scheduler.learn_count("m", 10, 10)  # calibrated: no start-up margin
    async with scheduler.slot("m", TokenEstimate(100)) as ticket:
        assert window.used() == 100
        scheduler.on_success(ticket, usage(130))
    assert window.used() == 130


@pytest.mark.parametrize(("code", "held"), [(429, 0), (400, 0), (500, 100), (503, 100), (None, 100)])
async def test_a_failed_request_keeps_its_tokens_only_if_the_server_may_have_counted_them(
    code: int | None, held: int
) -> None:
    scheduler, _, _ = make(Limits(concurrency=8, tpm=60_000))
    scheduler.learn_count("m", 10, 10)
    async with scheduler.slot("m", TokenEstimate(100)) as ticket:
        scheduler.on_failure(ticket, CallFailed("X", "failed", code=code, transport=code is None))
    assert scheduler.pace("m").tokens.used() == held


@pytest.mark.parametrize("factor", [3.0, 1 / 3])
async def test_the_first_answer_calibrates_the_next_reservations(factor: float) -> None:
    scheduler, _, _ = make(Limits(concurrency=8, tpm=600_000))
    window = scheduler.pace("m").tokens
    async with scheduler.slot("m", TokenEstimate(300)) as ticket:
        scheduler.on_success(ticket, usage(round(300 * factor)))
    before = window.used()
    async with scheduler.slot("m", TokenEstimate(600)):
        assert window.used() - before == pytest.approx(600 * factor, rel=0.01)


async def test_a_few_prompts_are_counted_before_the_first_answer_when_tokens_are_paced() -> None:
    unpaced, _, _ = make()
    assert not unpaced.wants_count("m")
    scheduler, _, _ = make(Limits(concurrency=8, tpm=60_000))
    assert [scheduler.wants_count("m") for _ in range(5)] == [True] * CALIBRATION_SAMPLE + [False] * (
        5 - CALIBRATION_SAMPLE
    )
    fresh, _, _ = make(Limits(concurrency=8, tpm=60_000))
    fresh.learn_count("m", 40, 120)
    assert not fresh.wants_count("m")
    assert fresh.pace("m").calibration.text_ratio == pytest.approx(3.0)
    blind, _, _ = make()  # a token 429 before any answer: count too
    async with blind.slot("m", TokenEstimate(100)) as ticket:
        blind.on_failure(ticket, rate_limited(1.0, TPM_QUOTA))
    assert blind.wants_count("m")


async def test_a_token_429_under_token_pacing_lowers_the_pace_once_per_burst() -> None:
    scheduler, _, _ = make(Limits(concurrency=8, tpm=36_000))
    scheduler.learn_count("m", 10, 10)
    pace = scheduler.pace("m")
    tickets = []
    for _ in range(3):
        async with scheduler.slot("m", TokenEstimate(50)) as ticket:
            tickets.append(ticket)
    for ticket in tickets:  # one burst: three 429s for requests admitted under the same pace
        scheduler.on_failure(ticket, rate_limited(0.5, TPM_QUOTA))
    ceiling = 36_000 * QUOTA_SAFETY  # the announced quota, under the user's own pace
    assert pace.tokens.per_minute == pytest.approx(ceiling * TOKEN_BACKOFF)
    for _ in range(20):  # more bursts: down to the floor, no further
        async with scheduler.slot("m", TokenEstimate(50)) as ticket:
            scheduler.on_failure(ticket, rate_limited(0.5, TPM_QUOTA))
    assert pace.tokens.per_minute == pytest.approx(ceiling * TOKEN_FLOOR)
    assert scheduler.concurrency.limit == 8


async def test_a_lowered_token_pace_recovers_after_quiet_periods() -> None:
    scheduler, clock, _ = make(Limits(concurrency=8, tpm=36_000))
    scheduler.learn_count("m", 10, 10)
    pace = scheduler.pace("m")
    async with scheduler.slot("m", TokenEstimate(50)) as ticket:
        scheduler.on_failure(ticket, rate_limited(4.0, TPM_QUOTA))  # quiet period: 2 x 4 s
    lowered = pace.tokens.per_minute
    assert lowered is not None
    clock.advance(8.5)
    async with scheduler.slot("m", TokenEstimate(50)) as ticket:
        scheduler.on_success(ticket, usage(50))
    assert pace.tokens.per_minute == pytest.approx(lowered * TOKEN_RECOVERY)
    for _ in range(10):
        clock.advance(9.0)
        async with scheduler.slot("m", TokenEstimate(50)) as ticket:
            scheduler.on_success(ticket, usage(50))
    assert pace.tokens.per_minute == pytest.approx(36_000 * QUOTA_SAFETY)  # back at the ceiling


async def test_a_token_quota_without_its_value_paces_under_the_admitted_tokens() -> None:
    scheduler, clock, _ = make()
    for _ in range(10):  # 10 answers of 100 tokens over 10 s: 6,000 tokens a minute admitted
        async with scheduler.slot("m", TokenEstimate(100)) as ticket:
            scheduler.on_success(ticket, usage(100))
        clock.advance(1.0)
    bare = QuotaViolation("GenerateContentInputTokensPerModelPerMinute-FreeTier")
    async with scheduler.slot("m", TokenEstimate(100)) as ticket:
        scheduler.on_failure(ticket, rate_limited(1.0, bare))
    assert scheduler.pace("m").tokens.per_minute == pytest.approx(6000 * OBSERVED_SAFETY, rel=0.1)


async def test_one_full_minute_window_is_one_pause_not_one_per_request() -> None:
    """A 60 s window: a burst of 429s (RetryInfo ~58-60 s) pauses the model once, for about a minute."""
    scheduler, clock, stats = make(Limits(concurrency=32))
    t0 = clock.now
    tickets = []
    for _ in range(20):
        async with scheduler.slot("m", TokenEstimate(500)) as ticket:
            tickets.append(ticket)
    for i, ticket in enumerate(tickets):
        clock.advance(0.01)  # the 429s of the burst come back over 0.2 s, each with its own delay
        scheduler.on_failure(ticket, rate_limited(60.0 - i * 0.1, TPM_QUOTA))
    pace = scheduler.pace("m")
    assert pace.paused_until - t0 == pytest.approx(60.0, abs=0.5)
    resumed = []
    for _ in range(20):  # the rows come back and go out paced, with no second pause
        async with scheduler.slot("m", TokenEstimate(100)) as ticket:
            resumed.append(clock.now)
            scheduler.on_success(ticket, usage(100))
    assert resumed[0] - t0 == pytest.approx(60.0, abs=0.5)
    assert resumed[-1] - resumed[0] < 5.0  # 2,000 tokens at 588 a second, no second pause
    assert stats.rate_limited == 20
    assert scheduler.concurrency.limit == 32


async def test_each_model_has_its_own_cool_down_and_quota() -> None:
    scheduler, clock, _ = make()
    async with scheduler.slot("a", TokenEstimate(10)) as ticket:
        scheduler.on_failure(ticket, rate_limited(30.0, TPM_QUOTA))
    t0 = clock.now
    async with scheduler.slot("b", TokenEstimate(10)):
        assert clock.now == t0
    assert scheduler.pace("b").tokens.per_minute is None
    async with scheduler.slot("a", TokenEstimate(10)):
        assert clock.now - t0 == pytest.approx(30.0, abs=1.1)
