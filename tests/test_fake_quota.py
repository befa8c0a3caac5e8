"""Unit tests of the fake's sliding-window quotas and 429 bodies, on an injected clock (no sleeping)."""

from __future__ import annotations

import pytest

from gembulk.fake.quota import Limits, QuotaTracker, Violation, quota_error, retry_delay


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_unlimited_admits_everything(clock: Clock) -> None:
    tracker = QuotaTracker(clock)
    assert all(tracker.admit("m", 10**6, Limits()) == [] for _ in range(1000))


def test_rpm_rejects_the_request_over_the_limit_until_the_oldest_leaves_the_window(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(rpm=5, window=60.0)
    for _ in range(5):
        assert tracker.admit("m", 1, limits) == []
        clock.now += 1.0
    (violation,) = tracker.admit("m", 1, limits)
    assert violation.kind == "rpm"
    assert violation.quota_id == "GenerateRequestsPerMinutePerProjectPerModel"
    assert violation.limit == 5
    assert violation.wait == pytest.approx(55.0)  # first request at t=1000 leaves at 1060; now is 1005
    clock.now += 54.9
    assert tracker.admit("m", 1, limits) != []
    clock.now += 0.1
    assert tracker.admit("m", 1, limits) == []


def test_rejected_requests_consume_nothing(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(rpm=2, rpd=4, window=10.0, day=100.0)
    assert tracker.admit("m", 1, limits) == []
    assert tracker.admit("m", 1, limits) == []
    for _ in range(50):
        assert tracker.admit("m", 1, limits)
    clock.now += 10.0
    assert tracker.admit("m", 1, limits) == []  # the 3rd admitted request of the day
    assert tracker.admit("m", 1, limits) == []  # the 4th: rpd was not charged for the 50 rejections
    assert sorted(v.kind for v in tracker.admit("m", 1, limits)) == ["rpd", "rpm"]


def test_quotas_are_per_model(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(rpm=1)
    assert tracker.admit("a", 1, limits) == []
    assert tracker.admit("b", 1, limits) == []
    assert tracker.admit("a", 1, limits)


def test_tpm_counts_prompt_tokens_and_waits_for_enough_tokens_to_expire(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(tpm=100, window=1.0)
    assert tracker.admit("m", 40, limits) == []
    clock.now += 0.25
    assert tracker.admit("m", 40, limits) == []
    clock.now += 0.25
    (violation,) = tracker.admit("m", 40, limits)
    assert violation.kind == "tpm"
    assert violation.quota_id == "GenerateContentInputTokensPerModelPerMinute"
    assert violation.wait == pytest.approx(0.5)  # the first 40 tokens leave the window at +1.0
    assert tracker.admit("m", 20, limits) == []  # 100 tokens exactly still fits


def test_a_request_larger_than_tpm_never_fits(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(tpm=10, window=2.0)
    (violation,) = tracker.admit("m", 11, limits)
    assert violation.kind == "tpm"
    assert violation.wait == 2.0
    clock.now += 100
    assert tracker.admit("m", 11, limits)


def test_rpd_uses_the_day_window_and_per_day_quota_id(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(rpd=2, day=3600.0)
    assert tracker.admit("m", 1, limits) == []
    clock.now += 100
    assert tracker.admit("m", 1, limits) == []
    (violation,) = tracker.admit("m", 1, limits)
    assert violation.quota_id == "GenerateRequestsPerDayPerProjectPerModel"
    assert "PerDay" in violation.quota_id
    assert violation.wait == pytest.approx(3500.0)
    assert retry_delay([violation])[1] == "3500s"


def test_several_violations_are_reported_together(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(rpm=1, tpm=5, window=60.0)
    assert tracker.admit("m", 5, limits) == []
    violations = tracker.admit("m", 5, limits)
    assert sorted(v.kind for v in violations) == ["rpm", "tpm"]


def test_reset_forgets_all_windows(clock: Clock) -> None:
    tracker, limits = QuotaTracker(clock), Limits(rpm=1)
    tracker.admit("m", 1, limits)
    tracker.reset()
    assert tracker.admit("m", 1, limits) == []


@pytest.mark.parametrize(
    ("wait", "period", "text"),
    [
        (57.2178, 60.0, "58s"),  # real windows: whole seconds, rounded up
        (3.0, 60.0, "3s"),
        (0.3461, 1.0, "0.347s"),  # compressed windows: millisecond precision
        (0.0, 1.0, "0.001s"),
    ],
)
def test_retry_delay_format(wait: float, period: float, text: str) -> None:
    assert retry_delay([Violation("rpm", 5, wait, period)])[1] == text


def test_quota_error_has_the_real_body_shape() -> None:
    body = quota_error([Violation("rpm", 5, 12.345678901, 60.0)], "gemini-3-flash")["error"]
    assert body["code"] == 429
    assert body["status"] == "RESOURCE_EXHAUSTED"
    assert body["message"].startswith(
        "You exceeded your current quota, please check your plan and billing details."
    )
    assert body["message"].endswith("Please retry in 12.345678901s.")
    assert "limit: 5, model: gemini-3-flash" in body["message"]
    help_, failure, retry = body["details"]
    assert help_["@type"] == "type.googleapis.com/google.rpc.Help"
    assert failure["@type"] == "type.googleapis.com/google.rpc.QuotaFailure"
    assert failure["violations"] == [
        {
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_paid_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel",
            "quotaDimensions": {"location": "global", "model": "gemini-3-flash"},
            "quotaValue": "5",
        }
    ]
    assert retry == {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "13s"}


def test_compressed_window_announces_the_per_minute_equivalent() -> None:
    # 20 requests per 1-second window is a 1,200 RPM quota, enforced more strictly.
    body = quota_error([Violation("rpm", 20, 0.3, 1.0)], "gemini-2.5-flash")["error"]
    assert body["details"][1]["violations"][0]["quotaValue"] == "1200"
    assert "limit: 1200," in body["message"]
    day = quota_error([Violation("rpd", 10, 5.0, 864.0)], "gemini-2.5-flash")["error"]
    assert day["details"][1]["violations"][0]["quotaValue"] == "1000"


def test_a_window_longer_than_a_minute_never_announces_a_zero_quota() -> None:
    # 1 request per 180 s is a third of one per minute: "0" would mean "no quota at all".
    body = quota_error([Violation("rpm", 1, 100.0, 180.0)], "gemini-2.5-flash")["error"]
    assert body["details"][1]["violations"][0]["quotaValue"] == "1"


def test_quotas_are_per_project(clock: Clock) -> None:
    tracker = QuotaTracker(clock)
    limits = Limits(rpm=1)
    assert tracker.admit("m", 1, limits, project="key-a") == []
    assert [v.kind for v in tracker.admit("m", 1, limits, project="key-a")] == ["rpm"]
    assert tracker.admit("m", 1, limits, project="key-b") == []  # another key is another project
