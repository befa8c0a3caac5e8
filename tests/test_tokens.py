"""Token estimates and their calibration against the server's counts."""

from __future__ import annotations

import pytest

from gembulk.tokens import (
    MEDIA_TOKENS,
    UNCALIBRATED_MARGIN,
    TokenCalibration,
    TokenEstimate,
    estimate_tokens,
)


def test_estimate_is_about_four_characters_a_token() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("x" * 400) == 101
    assert estimate_tokens("日本語") == 1  # characters, not bytes: calibration corrects it


def test_before_any_count_the_estimate_is_taken_with_a_margin() -> None:
    calibration = TokenCalibration()
    assert not calibration.calibrated
    assert calibration.expected(TokenEstimate(100)) == 100 * UNCALIBRATED_MARGIN


@pytest.mark.parametrize("factor", [3.0, 1 / 3])
def test_an_estimate_three_times_off_is_corrected_by_the_first_count(factor: float) -> None:
    calibration = TokenCalibration()
    calibration.learn(TokenEstimate(90), round(90 * factor))
    assert calibration.calibrated
    assert calibration.expected(TokenEstimate(120)) == pytest.approx(120 * factor, rel=0.02)


def test_the_ratio_follows_the_recent_counts_weighted_by_size() -> None:
    calibration = TokenCalibration()
    for _ in range(3):
        calibration.learn(TokenEstimate(100), 100)
    for _ in range(40):  # the job moves on to text counted three times the estimate
        calibration.learn(TokenEstimate(100), 300)
    assert calibration.text_ratio == pytest.approx(3.0, rel=0.01)
    calibration.learn(TokenEstimate(10), 10)  # one small answer hardly moves it
    assert calibration.text_ratio > 2.9


def test_media_cost_is_learned_once_text_is_known() -> None:
    calibration = TokenCalibration()
    calibration.learn(TokenEstimate(100), 200)  # text counts twice the estimate
    assert calibration.expected(TokenEstimate(100, media=1)) == 200 + MEDIA_TOKENS
    calibration.learn(TokenEstimate(50, media=2), 100 + 2 * 1000)  # each medium costs 1,000
    assert calibration.media_tokens == pytest.approx(1000)
    assert calibration.text_ratio == pytest.approx(2.0)
    assert calibration.expected(TokenEstimate(10, media=1)) == pytest.approx(1020, abs=1)


def test_rows_that_all_carry_media_calibrate_the_whole_request() -> None:
    calibration = TokenCalibration()
    for _ in range(5):  # no text-only count: the difference goes on the text, right for such rows
        calibration.learn(TokenEstimate(20, media=1), 20 + 1290)
    assert calibration.expected(TokenEstimate(20, media=1)) == pytest.approx(1310, rel=0.01)


def test_a_count_tokens_sample_calibrates_text() -> None:
    calibration = TokenCalibration()
    calibration.learn_text(40, 120)
    assert calibration.calibrated
    assert calibration.expected(TokenEstimate(10)) == 30


def test_counts_of_nothing_teach_nothing() -> None:
    calibration = TokenCalibration()
    calibration.learn(TokenEstimate(10), 0)
    calibration.learn_text(0, 5)
    assert not calibration.calibrated
