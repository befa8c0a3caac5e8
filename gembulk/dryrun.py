"""`--dry-run`: the first prompts, the row count, and the tokens and cost the run would take; nothing sent."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from gembulk.client import GeminiClient
from gembulk.errors import FatalAPIError
from gembulk.observer import RunObserver
from gembulk.prepare import Prepared, pending_requests
from gembulk.pricing import PriceTable
from gembulk.records import CallFailed, Usage
from gembulk.settings import RunOptions
from gembulk.tokens import MEDIA_TOKENS, estimate_tokens

DRY_RUN_SAMPLES = 3  # prompts shown
TOKEN_SAMPLE = 20  # prompts counted with countTokens (all of them when there are no more)


async def dry_run(options: RunOptions, prepared: Prepared, observer: RunObserver) -> None:
    """Show the first prompts, count the rows and estimate tokens and cost; send no generation request."""
    done = prepared.existing.done if prepared.existing else frozenset()
    sample: list[str] = []
    to_send = 0
    characters = 0
    per_model = dict.fromkeys(options.models, 0)
    attachments = 0
    async for request in pending_requests(prepared, options, done, None):
        to_send += 1
        per_model[request.model] += 1
        characters += len(request.prompt)
        attachments += len(request.attachments)
        if len(sample) < TOKEN_SAMPLE:
            sample.append(request.prompt)
        if to_send <= DRY_RUN_SAMPLES:
            media = "".join(f"\n[attached: {a.value}]" for a in request.attachments)
            observer.message(f"--- row {request.id} ({request.model}) ---{media}\n{request.prompt}")
    name = prepared.spec.display_name or prepared.spec.path
    observer.message(
        f"dry run: {prepared.total} rows in {name}, {to_send} to send, "
        f"{prepared.total - to_send} already done; nothing was sent"
    )
    if to_send:
        # With --context the system instruction is counted with the shared part (below), not per row.
        rows_options = replace(options, generation=replace(options.generation, system=None))
        estimate = await _estimate_tokens(
            rows_options if prepared.context is not None else options, sample, to_send, characters
        )
        if attachments:
            estimate = TokenEstimate(
                estimate.input_tokens + attachments * MEDIA_TOKENS,
                f"{estimate.how}; plus {attachments:,} attachments at ~{MEDIA_TOKENS} tokens each, an "
                "image's count (audio, video and long PDFs cost more)",
            )
        for model, rows in per_model.items():
            share = TokenEstimate(round(estimate.input_tokens * rows / to_send), estimate.how)
            prefix = f"{model}: " if len(per_model) > 1 else ""
            observer.message(prefix + cost_estimate(options, model, prepared.prices, share, rows))
    if prepared.context is not None:  # its tokens and cost come on top of the rows' own
        from gembulk.context.preview import preview

        for line in await preview(options, prepared.context, per_model, prepared.prices):
            observer.message(line)


@dataclass(frozen=True)
class TokenEstimate:
    input_tokens: int
    how: str  # how the figure was obtained, said next to it


async def _estimate_tokens(
    options: RunOptions, sample: list[str], rows: int, characters: int
) -> TokenEstimate:
    """countTokens on a sample (every prompt when there are few), extrapolated by characters."""
    system = options.generation.system
    if not options.api_key:
        local = sum(estimate_tokens(p) for p in sample) * characters / max(1, sum(map(len, sample)))
        local += rows * (estimate_tokens(system) if system else 0)
        return TokenEstimate(
            int(local), "estimated locally at ~4 characters a token (no API key for countTokens)"
        )
    async with GeminiClient(
        api_key=options.api_key,
        base_url=options.base_url,
        max_connections=8,
        timeout=options.timeout,
        settings=options.generation,
    ) as client:
        try:
            counts = await asyncio.gather(*(client.count_tokens(options.model, p) for p in sample))
            system_tokens = await client.count_tokens(options.model, system) if system else 0
        except CallFailed as failure:
            raise FatalAPIError(
                f"countTokens failed: {failure.code} {failure.status}: {failure.message}"
            ) from None
    counted = sum(counts)
    exact = len(sample) == rows
    total = counted if exact else counted * characters / max(1, sum(map(len, sample)))
    how = "exact, by countTokens" if exact else f"countTokens on {len(sample)} prompts, extrapolated"
    return TokenEstimate(round(total) + rows * system_tokens, how)


def cost_estimate(
    options: RunOptions, model: str, prices: PriceTable, estimate: TokenEstimate, rows: int
) -> str:
    """One paragraph: input tokens, and what they and the output would cost online and in batch."""
    line = f"input: {estimate.input_tokens:,} tokens ({estimate.how})"
    price = prices.price_for(model)
    if price is None:
        return line + f"; no price known for {model} (pass --prices FILE)"
    discount = prices.batch_discount
    input_cost = prices.cost(model, Usage(prompt_tokens=estimate.input_tokens)) or 0.0
    line += f"; input cost ${input_cost:.4f} online, ${input_cost * discount:.4f} batch"
    if options.generation.max_output_tokens:
        bound = rows * options.generation.max_output_tokens
        out = bound * price.output / 1e6
        line += (
            f"; output at most {bound:,} tokens: up to ${input_cost + out:.4f} in all online, "
            f"${(input_cost + out) * discount:.4f} batch"
        )
    else:
        per_k = rows * 1000 * price.output / 1e6
        line += (
            f"; output not included: each 1,000 output tokens per row adds ${per_k:.4f} online "
            f"(${per_k * discount:.4f} batch); --max-output-tokens bounds it"
        )
    return line + f" [prices of {prices.date}]"
