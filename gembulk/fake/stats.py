"""Counters of the fake API, served at GET /_fake/stats for tests and benchmarks."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from gembulk.fake.content import Media


@dataclass(slots=True)
class Stats:
    """Request counters; "requests" means generateContent, streamGenerateContent and countTokens."""

    by_status: dict[int, int] = field(default_factory=dict)
    generate: int = 0
    count_tokens: int = 0
    rate_limited: int = 0  # 429s sent, quota or marker
    in_flight: int = 0
    peak: int = 0
    dropped: int = 0
    api_faults: int = 0  # Files/Batch API calls answered 500/503 by api_error_rate
    models_get: int = 0  # GET models/NAME (models.list not counted)
    # generateContent attempts per distinct user prompt text, failed ones included (retries show up here).
    by_prompt: dict[str, int] = field(default_factory=dict)
    max_attempts: int = 0
    keys: set[str] = field(default_factory=set)
    # Media parts received by generateContent: inline bytes and Files API references, and the sha256
    # (hex) of every medium seen with its count, so tests can check which bytes arrived.
    inline_parts: int = 0
    inline_bytes: int = 0
    file_parts: int = 0
    media_sha256: dict[str, int] = field(default_factory=dict)
    epoch: int = 0  # how many times cleared: a request begun before a clear is not counted when it ends

    def clear(self) -> None:
        """Zero every counter in place; requests still in flight stay counted as in flight (their handlers
        hold self), but what they end with belongs to the period before the clear."""
        in_flight = self.in_flight
        self.__init__(in_flight=in_flight, peak=in_flight, epoch=self.epoch + 1)  # type: ignore[misc]

    def count_prompt(self, text: str) -> None:
        attempts = self.by_prompt[text] = self.by_prompt.get(text, 0) + 1
        if attempts > self.max_attempts:
            self.max_attempts = attempts

    def count_media(self, media: Iterable[Media]) -> None:
        for part in media:
            if part.kind == "inline":
                self.inline_parts += 1
                self.inline_bytes += part.size
            else:
                self.file_parts += 1
            self.media_sha256[part.sha256] = self.media_sha256.get(part.sha256, 0) + 1

    def snapshot(self, **extra: int) -> dict[str, Any]:
        return {
            "requests_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "generate_requests": self.generate,
            "count_tokens_requests": self.count_tokens,
            "rate_limited": self.rate_limited,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak,
            "dropped": self.dropped,
            "api_faults": self.api_faults,
            "models_get_requests": self.models_get,
            "by_prompt": self.by_prompt,
            "distinct_requests": len(self.by_prompt),
            "max_attempts_per_request": self.max_attempts,
            "inline_parts": self.inline_parts,
            "inline_bytes": self.inline_bytes,
            "file_parts": self.file_parts,
            "media_sha256": self.media_sha256,
            **extra,
            "keys_seen": sorted(self.keys),
        }
