"""The retry policy: classification table, server delays, attempt and time caps, on a manual clock."""

from __future__ import annotations

import pytest

from gembulk.records import CallFailed, QuotaViolation
from gembulk.retry import RetryPolicy, Verdict, backoff_for, build_retrying, call_with_retries, classify
from tests.clock import FakeClock

PER_MINUTE = QuotaViolation("GenerateRequestsPerMinutePerProjectPerModel", 1200)
PER_DAY = QuotaViolation("GenerateRequestsPerDayPerProjectPerModel-FreeTier", 50)


@pytest.mark.parametrize(
    ("failure", "verdict"),
    [
        (CallFailed("RESOURCE_EXHAUSTED", "slow down", code=429, violations=(PER_MINUTE,)), Verdict.RETRY),
        (CallFailed("RESOURCE_EXHAUSTED", "bare 429", code=429), Verdict.RETRY),
        (CallFailed("RESOURCE_EXHAUSTED", "day", code=429, violations=(PER_MINUTE, PER_DAY)), Verdict.FATAL),
        (CallFailed("INTERNAL", "oops", code=500), Verdict.RETRY),
        (CallFailed("Bad Gateway", "proxy", code=502), Verdict.RETRY),
        (CallFailed("UNAVAILABLE", "overloaded", code=503), Verdict.RETRY),
        (CallFailed("DEADLINE_EXCEEDED", "slow", code=504), Verdict.RETRY),
        (CallFailed("DEADLINE_EXCEEDED", "timeout", transport=True), Verdict.RETRY),
        (CallFailed("UNAVAILABLE", "dropped", transport=True), Verdict.RETRY),
        (CallFailed("INVALID_ARGUMENT", "bad request", code=400), Verdict.FAIL_ROW),
        (CallFailed("INVALID_ARGUMENT", "key", code=400, reason="API_KEY_INVALID"), Verdict.FATAL),
        (CallFailed("PERMISSION_DENIED", "denied", code=403), Verdict.FATAL),
        (CallFailed("NOT_FOUND", "no such model", code=404), Verdict.FATAL),
        (CallFailed("FAILED_PRECONDITION", "region", code=409), Verdict.FAIL_ROW),
    ],
)
def test_classification(failure: CallFailed, verdict: Verdict) -> None:
    assert classify(failure) is verdict


def test_server_delay_wins_over_exponential_backoff() -> None:
    policy = RetryPolicy()
    failure = CallFailed("RESOURCE_EXHAUSTED", "x", code=429, retry_delay=37.0)
    assert backoff_for(failure, 1, policy, rng=lambda: 0.0) == pytest.approx(37.0)
    # jitter is bounded and small relative to the server's delay
    assert 37.0 < backoff_for(failure, 5, policy, rng=lambda: 1.0) <= 37.5


def test_exponential_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.5, max_backoff=4.0, jitter=0.0)
    failure = CallFailed("UNAVAILABLE", "x", code=503)
    waits = [backoff_for(failure, n, policy, rng=lambda: 0.0) for n in range(1, 7)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


async def _run(policy: RetryPolicy, failures: list[CallFailed], clock: FakeClock) -> tuple[int, object]:
    calls = 0
    events = []

    async def attempt() -> str:
        nonlocal calls
        calls += 1
        if failures:
            raise failures.pop(0)
        return "ok"

    retrying = build_retrying(policy, sleep=clock.sleep, clock=clock, rng=lambda: 0.0, on_retry=events.append)
    try:
        result = await retrying(attempt)
    except CallFailed as exc:
        result = exc
    return calls, result


async def test_retries_transient_then_succeeds_with_recorded_sleeps() -> None:
    clock = FakeClock()
    policy = RetryPolicy(initial_backoff=1.0, jitter=0.0)
    failures = [
        CallFailed("UNAVAILABLE", "a", code=503),
        CallFailed("RESOURCE_EXHAUSTED", "b", code=429, retry_delay=7.0),
    ]
    calls, result = await _run(policy, failures, clock)
    assert (calls, result) == (3, "ok")
    assert clock.sleeps == [pytest.approx(1.0), pytest.approx(7.0)]


async def test_permanent_error_is_not_retried() -> None:
    clock = FakeClock()
    calls, result = await _run(RetryPolicy(), [CallFailed("INVALID_ARGUMENT", "x", code=400)], clock)
    assert calls == 1
    assert isinstance(result, CallFailed) and result.code == 400
    assert clock.sleeps == []


async def test_fatal_error_is_not_retried() -> None:
    clock = FakeClock()
    calls, result = await _run(
        RetryPolicy(), [CallFailed("RESOURCE_EXHAUSTED", "d", code=429, violations=(PER_DAY,))], clock
    )
    assert calls == 1 and isinstance(result, CallFailed)


async def test_attempt_cap_reraises_the_last_error() -> None:
    clock = FakeClock()
    failures = [CallFailed("INTERNAL", f"n{i}", code=500) for i in range(10)]
    calls, result = await _run(RetryPolicy(max_attempts=3, jitter=0.0), failures, clock)
    assert calls == 3
    assert isinstance(result, CallFailed) and result.message == "n2"
    assert len(clock.sleeps) == 2


async def test_time_cap_stops_before_a_sleep_that_would_pass_it() -> None:
    clock = FakeClock()
    failures = [CallFailed("RESOURCE_EXHAUSTED", "x", code=429, retry_delay=40.0) for _ in range(10)]
    calls, result = await _run(RetryPolicy(max_attempts=100, max_time=100.0), failures, clock)
    # sleeps of 40 s: after two (80 s) a third would pass 100 s
    assert calls == 3
    assert clock.sleeps == [pytest.approx(40.0), pytest.approx(40.0)]
    assert isinstance(result, CallFailed)


async def test_non_call_errors_propagate_untouched() -> None:
    clock = FakeClock()

    async def attempt() -> None:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        await build_retrying(RetryPolicy(), sleep=clock.sleep, clock=clock)(attempt)
    assert clock.sleeps == []


async def test_call_with_retries_retries_transient_failures_and_raises_others() -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.0, jitter=0.0)
    answers: list[Exception | str] = [CallFailed("UNAVAILABLE", "busy", code=503)] * 2 + ["done"]
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        answer = answers[calls - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await call_with_retries(policy, flaky) == "done" and calls == 3

    async def refused() -> str:
        raise CallFailed("NOT_FOUND", "gone", code=404)

    with pytest.raises(CallFailed) as raised:
        await call_with_retries(policy, refused)
    assert raised.value.code == 404
