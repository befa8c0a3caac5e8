"""Input-token estimates, calibrated per model against what the server counts (promptTokenCount)."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Tokens one image costs (Gemini's count for an image up to 384 px): the first guess for any medium.
MEDIA_TOKENS = 258
# Until a model's first count arrives, a request is assumed to cost this many times its estimate:
# "four characters a token" is about right for English, 3-4x low for Chinese, Japanese or emoji.
UNCALIBRATED_MARGIN = 4.0
# Weight of each new count in the calibration (an exponential moving average over ~1/RATE answers).
LEARNING_RATE = 0.15


def estimate_tokens(text: str) -> int:
    """A cheap, uncalibrated estimate (about four characters a token); see TokenCalibration."""
    return len(text) // 4 + 1


@dataclass(frozen=True, slots=True)
class TokenEstimate:
    """A request's uncalibrated cost: estimated text tokens (system instruction + prompt), media parts."""

    text: int
    media: int = 0


class TokenCalibration:
    """How one model's tokenizer counts compared with the estimate, learned from its counts.

    Each answer's promptTokenCount (system instruction and media included) teaches the ratio of
    counted to estimated text tokens, an average over the recent answers weighted by their size, and
    the tokens a medium costs. A request with media teaches the medium's cost once text-only counts
    (answers without media, or countTokens samples) have fixed the text ratio; until then the whole
    difference is put on the text, which is right for the job as long as its rows look alike.
    """

    def __init__(self) -> None:
        self._counted = 0.0  # moving sums of counted and estimated text tokens
        self._estimated = 0.0
        self.media_tokens = float(MEDIA_TOKENS)
        self.counts = 0  # counts learned from
        self._text_known = False  # a text-only count has been seen
        self._media_known = False

    @property
    def calibrated(self) -> bool:
        return self.counts > 0

    @property
    def text_ratio(self) -> float:
        return self._counted / self._estimated if self._estimated else 1.0

    def expected(self, estimate: TokenEstimate) -> int:
        """The tokens the server will probably count for this request."""
        tokens = estimate.text * self.text_ratio + estimate.media * self.media_tokens
        if not self.calibrated:
            tokens *= UNCALIBRATED_MARGIN
        return max(1, math.ceil(tokens))

    def learn(self, estimate: TokenEstimate, counted: int) -> None:
        """The server counted `counted` prompt tokens for a request estimated as `estimate`."""
        if counted <= 0 or estimate.text <= 0:
            return
        if estimate.media and self._text_known:
            per_medium = max(0.0, counted - estimate.text * self.text_ratio) / estimate.media
            rate = LEARNING_RATE if self._media_known else 1.0
            self.media_tokens += rate * (per_medium - self.media_tokens)
            self._media_known = True
        else:
            text = max(1.0, counted - estimate.media * self.media_tokens)
            self._learn_text(estimate.text, text)
            self._text_known = self._text_known or not estimate.media
        self.counts += 1

    def learn_text(self, estimated: int, counted: int) -> None:
        """A countTokens answer for text alone."""
        if counted > 0 and estimated > 0:
            self._learn_text(estimated, counted)
            self._text_known = True
            self.counts += 1

    def _learn_text(self, estimated: float, counted: float) -> None:
        keep = 1.0 - LEARNING_RATE if self._estimated else 0.0
        self._counted = self._counted * keep + counted
        self._estimated = self._estimated * keep + estimated
