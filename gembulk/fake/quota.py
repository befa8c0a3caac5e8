"""Sliding-window quotas (RPM, TPM, RPD) per project and model, and the real 429 body they produce.

The real quotas are per project and per model ("GenerateRequestsPerMinutePerProjectPerModel"); the fake
stands one API key for one project, so two keys have separate windows.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_REQUESTS_METRIC = "generativelanguage.googleapis.com/generate_content_paid_tier_requests"
_TOKENS_METRIC = "generativelanguage.googleapis.com/generate_content_paid_tier_input_token_count"
# Paid-tier quota ids (no "-FreeTier" suffix); clients tell per-minute from per-day by "PerMinute"/"PerDay".
QUOTA_IDS = {
    "rpm": "GenerateRequestsPerMinutePerProjectPerModel",
    "tpm": "GenerateContentInputTokensPerModelPerMinute",
    "rpd": "GenerateRequestsPerDayPerProjectPerModel",
}
_MESSAGE_HEAD = (
    "You exceeded your current quota, please check your plan and billing details. For more information on "
    "this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, "
    "head to: https://ai.dev/rate-limit. "
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Quota limits (0 = unlimited) and the lengths of their windows in seconds."""

    rpm: int = 0
    tpm: int = 0
    rpd: int = 0
    window: float = 60.0
    day: float = 86400.0


@dataclass(frozen=True, slots=True)
class Violation:
    """One exceeded quota: which one, its limit, and how long until the request would fit."""

    kind: str  # "rpm" | "tpm" | "rpd"
    limit: int
    wait: float  # seconds
    period: float  # the window the quota is counted over

    @property
    def quota_id(self) -> str:
        return QUOTA_IDS[self.kind]

    @property
    def announced(self) -> int:
        """The limit as the real API states it: per minute (or per day), whatever the window.

        Under time compression (a window shorter than the real one) the enforced count per window is
        scaled to the nominal period, so "20 per 1 s window" is announced as quotaValue 1200 (per minute).
        Never 0, which on the real API means no quota at all: a window longer than the nominal period
        announces at least 1.
        """
        nominal = 86400.0 if self.kind == "rpd" else 60.0
        return max(1, round(self.limit * nominal / self.period))


@dataclass(slots=True)
class _ModelUsage:
    recent: deque[tuple[float, int]] = field(default_factory=deque)  # (time, tokens) in the rpm/tpm window
    recent_tokens: int = 0
    daily: deque[float] = field(default_factory=deque)


class QuotaTracker:
    """Admits or rejects requests per (project, model); rejected requests consume nothing."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._models: dict[tuple[str, str], _ModelUsage] = {}

    def reset(self) -> None:
        self._models.clear()

    def admit(self, model: str, tokens: int, limits: Limits, project: str = "") -> list[Violation]:
        """Record the request and return [] if it fits every quota, else the violations (nothing recorded).

        `project` (the fake uses the API key) separates the windows of different projects."""
        if not (limits.rpm or limits.tpm or limits.rpd):
            return []
        now = self._clock()
        usage = self._models.get((project, model))
        if usage is None:
            usage = self._models[project, model] = _ModelUsage()
        recent, daily = usage.recent, usage.daily
        while recent and recent[0][0] + limits.window <= now:
            usage.recent_tokens -= recent.popleft()[1]
        while daily and daily[0] + limits.day <= now:
            daily.popleft()
        found = []
        if limits.rpm and len(recent) >= limits.rpm:
            # It fits once enough of the oldest requests have left the window.
            oldest_needed = recent[len(recent) - limits.rpm][0]
            found.append(Violation("rpm", limits.rpm, oldest_needed + limits.window - now, limits.window))
        if limits.tpm and usage.recent_tokens + tokens > limits.tpm:
            found.append(
                Violation("tpm", limits.tpm, self._token_wait(usage, tokens, limits, now), limits.window)
            )
        if limits.rpd and len(daily) >= limits.rpd:
            oldest_needed = daily[len(daily) - limits.rpd]
            found.append(Violation("rpd", limits.rpd, oldest_needed + limits.day - now, limits.day))
        if found:
            return found
        if limits.rpm or limits.tpm:
            recent.append((now, tokens))
            usage.recent_tokens += tokens
        if limits.rpd:
            daily.append(now)
        return []

    @staticmethod
    def _token_wait(usage: _ModelUsage, tokens: int, limits: Limits, now: float) -> float:
        if tokens > limits.tpm:  # can never fit; say "a whole window", as the real API gives some delay
            return limits.window
        excess = usage.recent_tokens + tokens - limits.tpm
        for when, spent in usage.recent:
            excess -= spent
            if excess <= 0:
                return when + limits.window - now
        return limits.window


def retry_delay(violations: list[Violation]) -> tuple[float, str]:
    """The wait (s) and its RetryInfo string: whole seconds rounded up for real-length windows, and
    millisecond precision when the window is compressed below 60 s (time compression for tests)."""
    worst = max(violations, key=lambda v: v.wait)
    wait = max(worst.wait, 0.001)
    if worst.period >= 60:
        return wait, f"{math.ceil(wait)}s"
    return wait, f"{math.ceil(wait * 1000) / 1000:.3f}s"


def quota_error(violations: list[Violation], model: str, delay: str | None = None) -> dict[str, Any]:
    """The real 429 RESOURCE_EXHAUSTED body: Help, QuotaFailure, RetryInfo (no Retry-After header)."""
    wait, text_delay = retry_delay(violations)
    if delay is not None:
        text_delay, wait = delay, float(delay.rstrip("s"))
    lines = "".join(
        f"\n* Quota exceeded for metric: {_metric(v)}, limit: {v.announced}, model: {model}"
        for v in violations
    )
    return {
        "error": {
            "code": 429,
            "message": f"{_MESSAGE_HEAD}{lines}\nPlease retry in {wait:.9f}s.",
            "status": "RESOURCE_EXHAUSTED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": _metric(v),
                            "quotaId": v.quota_id,
                            "quotaDimensions": {"location": "global", "model": model},
                            "quotaValue": str(v.announced),
                        }
                        for v in violations
                    ],
                },
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": text_delay},
            ],
        }
    }


def _metric(v: Violation) -> str:
    return _TOKENS_METRIC if v.kind == "tpm" else _REQUESTS_METRIC
