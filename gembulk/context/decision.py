"""Whether the shared context goes into a cachedContents entry, per model: the caching minimum, the price
arithmetic (cached reads plus storage for the run against sending it with every request), --context-cache."""

from __future__ import annotations

from dataclasses import dataclass

from gembulk.pricing import PER_MILLION, ModelPrice
from gembulk.records import Usage
from gembulk.settings import ContextCache

# Explicit caching's minimum size ("Min token limit", ai.google.dev/gemini-api/docs/caching, page updated
# 2026-05-07): 2.5 Flash 1,024, 2.5 Pro 4,096, 3 Flash Preview 1,024, 3 Pro Preview 4,096. Other names take
# their family's value by prefix; a model no prefix matches gets 4,096 (an assumption). A create refused
# as too small is not fatal either way: the context then goes inline, with a warning.
_MINIMUMS = (
    ("gemini-2.5-flash", 1024),
    ("gemini-2.5-pro", 4096),
    ("gemini-3-flash", 1024),
    ("gemini-3-pro", 4096),
    ("gemini-flash", 1024),
    ("gemini-pro", 4096),
    ("gemini-2.0-flash", 4096),
)
DEFAULT_MINIMUM = 4096

# Online, the cache's TTL is short and refreshed while the run lasts (so one left by a killed run soon
# expires), and the run deletes it when it ends: storage is paid for the run's length. Until a run has
# shown its pace, it is assumed to send this many requests a minute (or --rpm), a slow pace, so the
# storage estimate errs high.
ASSUMED_RPM = 60.0
MIN_ONLINE_HOURS = 5 / 60
# A batch's cache must outlive the job: the Batch API's turnaround target is 24 h, the estimate. Its TTL is
# BATCH_TTL_HOURS, so a late job (or a late `batch fetch`, which deletes it) still finds it.
BATCH_HOURS = 24.0
BATCH_TTL_HOURS = 48.0


def minimum_tokens(model: str) -> int:
    name = model.removeprefix("models/")
    for prefix, minimum in _MINIMUMS:
        if name.startswith(prefix):
            return minimum
    return DEFAULT_MINIMUM


def expected_hours(requests: int, *, batch: bool, rpm: float | None = None) -> float:
    """How long the cache is expected to be stored: a batch's 24 h, or the online run at its pace."""
    if batch:
        return BATCH_HOURS
    return max(MIN_ONLINE_HOURS, requests / (rpm or ASSUMED_RPM) / 60)


@dataclass(frozen=True)
class CacheDecision:
    """Cache the shared context for one model or send it inline, why, and the arithmetic behind it."""

    model: str
    cache: bool
    reason: str
    tokens: int  # of the shared part, system instruction included
    requests: int
    hours: float  # the storage the cached cost assumes
    inline_cost: float | None = None  # USD for the shared part sent with every request
    cached_cost: float | None = None  # USD for cached reads of it plus storage

    def costs(self) -> str:
        if self.inline_cost is None or self.cached_cost is None:
            return ""
        return f"~${self.cached_cost:.4f} cached against ~${self.inline_cost:.4f} inline"


def decide(
    mode: ContextCache,
    model: str,
    tokens: int,
    requests: int,
    price: ModelPrice | None,
    *,
    hours: float,
    batch_factor: float = 1.0,
) -> CacheDecision:
    """The choice for one model. `batch_factor` is the Batch API's discount: it halves inline input but
    not cached reads (Google: a batch's cache hits are "priced the same as for non-batch API traffic")."""

    def decision(cache: bool, reason: str) -> CacheDecision:
        inline, cached = _costs(price, tokens, requests, hours, batch_factor)
        return CacheDecision(model, cache, reason, tokens, requests, hours, inline, cached)

    if mode is ContextCache.OFF:
        return decision(False, "--context-cache off")
    if requests == 0:
        return decision(False, "no request to send")
    minimum = minimum_tokens(model)
    if tokens < minimum:
        return decision(False, f"{tokens:,} tokens, under {model}'s caching minimum of {minimum:,}")
    if mode is ContextCache.ON:
        return decision(True, "--context-cache on")
    if price is None:
        return decision(False, f"no price is known for {model}, so it cannot tell whether caching pays")
    if not price.supports_caching:
        return decision(False, f"{model} has no context-caching price (no explicit caching)")
    inline, cached = _costs(price, tokens, requests, hours, batch_factor)
    assert inline is not None and cached is not None
    if cached < inline:
        return decision(True, f"it pays for {requests:,} requests")
    return decision(False, f"it would not pay for {requests:,} requests")


def _costs(
    price: ModelPrice | None, tokens: int, requests: int, hours: float, factor: float
) -> tuple[float | None, float | None]:
    if price is None:
        return None, None
    shared = Usage(prompt_tokens=tokens)
    inline = requests * tokens * price.input_rate(shared) * factor / PER_MILLION
    cached_rate = price.cached_rate(shared)
    if cached_rate is None:
        return inline, None
    cached = requests * tokens * cached_rate / PER_MILLION + price.storage_cost(tokens, hours)
    return inline, cached
