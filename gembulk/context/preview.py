"""`--dry-run` with --context: the shared part's tokens, the choice per model, and its cost with and
without caching. Nothing is uploaded or cached: media too large to count inline are estimated."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from gembulk.client import GeminiClient
from gembulk.context.decision import decide, expected_hours
from gembulk.context.material import SharedContext
from gembulk.errors import FatalAPIError
from gembulk.pricing import PriceTable
from gembulk.records import CallFailed
from gembulk.settings import RunOptions

_MEDIUM_TOKENS = 258  # an image's count, for a medium not counted here


async def preview(
    options: RunOptions, context: SharedContext, requests: Mapping[str, int], prices: PriceTable
) -> list[str]:
    """One line per model: tokens, cached or inline and why, and the shared part's cost both ways."""
    tokens, how = await _count(options, context, list(requests))
    batch = options.batch is not None
    factor = prices.batch_discount if batch else 1.0
    lines = []
    for model, count in requests.items():
        hours = expected_hours(count, batch=batch, rpm=options.limits.rpm)
        decision = decide(
            options.context_cache,
            model,
            tokens[model],
            count,
            prices.price_for(model),
            hours=hours,
            batch_factor=factor,
        )
        mode = "cached (one cachedContents entry)" if decision.cache else "inline, first in every request"
        line = (
            f"shared context ({context.describe()}) on {model}: {tokens[model]:,} tokens ({how}); "
            f"{mode}: {decision.reason}"
        )
        if decision.inline_cost is not None:
            line += f"; for {count:,} requests it costs ${decision.inline_cost:.4f} without caching"
            if decision.cached_cost is not None:
                line += f", ${decision.cached_cost:.4f} with it (cached reads and {hours:.2g} h of storage)"
            else:
                line += f" ({model} has no caching price)"
        lines.append(line + f" [prices of {prices.date}]")
    return lines


async def _count(
    options: RunOptions, context: SharedContext, models: list[str]
) -> tuple[dict[str, int], str]:
    if not options.api_key:
        local = context.local_tokens()
        return dict.fromkeys(models, local), "estimated locally at ~4 characters a token (no API key)"
    counted = [item.inline_part() for item in context.items if item.is_text or item.data is not None]
    uncounted = len(context.items) - len(counted)
    async with GeminiClient(
        api_key=options.api_key,
        base_url=options.base_url,
        max_connections=4,
        timeout=options.timeout,
        settings=options.generation,
    ) as client:

        async def one(model: str) -> int:
            total = await client.count_shared_tokens(model, counted) if counted else 0
            if context.system:
                total += await client.count_tokens(model, context.system)
            return total + uncounted * _MEDIUM_TOKENS

        try:
            totals = await asyncio.gather(*(one(model) for model in models))
        except CallFailed as failure:
            raise FatalAPIError(
                f"countTokens failed: {failure.code} {failure.status}: {failure.message}"
            ) from None
    how = "by countTokens"
    if uncounted:
        how += f", plus ~{_MEDIUM_TOKENS} for each of {uncounted} large media not sent in a dry run"
    return dict(zip(models, totals, strict=True)), how
