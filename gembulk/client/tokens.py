"""A cheap token estimate of a request, for tokens-per-minute pacing and cost budgets before the answer."""

from __future__ import annotations

# Tokens one image costs (Gemini's count for an image up to 384 px): the estimate used for any medium.
MEDIA_TOKENS = 258


def estimate_tokens(text: str) -> int:
    """A cheap upper-ish estimate for tokens-per-minute pacing (about four characters a token)."""
    return len(text) // 4 + 1
