"""`--dry-run`: the first prompts, the row count, and the tokens and cost the run would take; nothing sent."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field, replace

from gembulk.client import GeminiClient
from gembulk.context.lifecycle import sized_for_context
from gembulk.errors import FatalAPIError
from gembulk.modelinfo import PROMPT_TOO_LONG, PromptSizeCheck, request_checks
from gembulk.observer import RunObserver
from gembulk.outputs import Resume
from gembulk.prepare import Prepared, pending_requests
from gembulk.pricing import PriceTable
from gembulk.records import CallFailed, Outcome, PromptRequest, Usage
from gembulk.settings import RunOptions
from gembulk.tokens import MEDIA_TOKENS, estimate_tokens

DRY_RUN_SAMPLES = 3  # prompts shown
SHOWN_CHARACTERS = 2000  # of each prompt shown
TOKEN_SAMPLE = 20  # prompts counted with countTokens (all of them when there are no more)


async def dry_run(options: RunOptions, prepared: Prepared, observer: RunObserver) -> None:
    """Show the first prompts, count the rows and estimate tokens and cost; send no generation request.

    With an API key the models are looked up (models.get) and the tokens counted (countTokens); without
    one the shipped limits and a local estimate serve.
    """
    client = _client(options) if options.api_key else contextlib.nullcontext(None)
    async with client as counting:
        check = await request_checks(
            counting, options.models, options.generation.system, options.generation.max_output_tokens
        )
        rows = await _scan(options, prepared, observer, sized_for_context(check, prepared.context))
        name = prepared.spec.display_name or prepared.spec.path
        failing = "".join(f", {_unsent(status, count)}" for status, count in rows.unsendable.items())
        observer.message(
            f"dry run: {prepared.total} rows in {name}, {rows.to_send} to send{failing}, "
            f"{prepared.total - rows.to_send - sum(rows.unsendable.values())} already done; nothing was sent"
        )
        if rows.to_send:
            await _show_cost(options, prepared, observer, counting, rows)
    if prepared.context is not None and rows.to_send:  # its tokens and cost come on top of the rows' own
        from gembulk.context.preview import preview

        for line in await preview(options, prepared.context, rows.per_model, prepared.prices):
            observer.message(line)


@dataclass
class _Rows:
    """What the dry run saw of the requests still to send."""

    to_send: int = 0
    unsendable: dict[str, int] = field(default_factory=dict)  # rows that would fail unsent, by status
    characters: int = 0
    attachments: int = 0
    sample: list[str] = field(default_factory=list)  # prompts to count tokens on
    per_model: dict[str, int] = field(default_factory=dict)


async def _scan(
    options: RunOptions, prepared: Prepared, observer: RunObserver, check: PromptSizeCheck | None
) -> _Rows:
    rows = _Rows(per_model=dict.fromkeys(options.models, 0))

    async def unsendable(request: PromptRequest, outcome: Outcome) -> None:
        error = outcome.error
        assert error is not None
        if error.status not in rows.unsendable:
            observer.message(f"row {request.id} would fail unsent: {error.status}: {error.message}")
        rows.unsendable[error.status] = rows.unsendable.get(error.status, 0) + 1

    resume = Resume(prepared.existing)
    async for request in pending_requests(prepared, options, resume, None, unsendable, check):
        rows.to_send += 1
        rows.per_model[request.model] += 1
        rows.characters += len(request.prompt)
        rows.attachments += len(request.attachments)
        if len(rows.sample) < TOKEN_SAMPLE:
            rows.sample.append(request.prompt)
        if rows.to_send <= DRY_RUN_SAMPLES:
            media = "".join(f"\n[attached: {a.value}]" for a in request.attachments)
            observer.message(f"--- row {request.id} ({request.model}) ---{media}\n{_shown(request.prompt)}")
    return rows


async def _show_cost(
    options: RunOptions,
    prepared: Prepared,
    observer: RunObserver,
    client: GeminiClient | None,
    rows: _Rows,
) -> None:
    if prepared.context is not None:  # the system instruction is counted with the shared context
        options = replace(options, generation=replace(options.generation, system=None))
    estimate = await _estimate_tokens(options, client, rows.sample, rows.to_send, rows.characters)
    if rows.attachments:
        estimate = TokenEstimate(
            estimate.input_tokens + rows.attachments * MEDIA_TOKENS,
            f"{estimate.how}; plus {rows.attachments:,} attachments at ~{MEDIA_TOKENS} tokens each, an "
            "image's count (audio, video and long PDFs cost more)",
        )
    for model, count in rows.per_model.items():
        share = TokenEstimate(round(estimate.input_tokens * count / rows.to_send), estimate.how)
        prefix = f"{model}: " if len(rows.per_model) > 1 else ""
        observer.message(prefix + cost_estimate(options, model, prepared.prices, share, count))


def _unsent(status: str, count: int) -> str:
    if status == PROMPT_TOO_LONG:
        return f"{count} too long to send ({status})"
    return f"{count} would fail unsent ({status})"


def _shown(prompt: str) -> str:
    """A prompt as the dry run shows it: a cell of megabytes is cut, with the length said."""
    if len(prompt) <= SHOWN_CHARACTERS:
        return prompt
    return f"{prompt[:SHOWN_CHARACTERS]}… ({len(prompt) - SHOWN_CHARACTERS:,} more characters)"


def _client(options: RunOptions) -> GeminiClient:
    assert options.api_key is not None
    return GeminiClient(
        api_key=options.api_key,
        base_url=options.base_url,
        max_connections=8,
        timeout=options.timeout,
        settings=options.generation,
    )


@dataclass(frozen=True)
class TokenEstimate:
    input_tokens: int
    how: str  # how the figure was obtained, said next to it


async def _estimate_tokens(
    options: RunOptions, client: GeminiClient | None, sample: list[str], rows: int, characters: int
) -> TokenEstimate:
    """countTokens on a sample (every prompt when there are few), extrapolated by characters."""
    system = options.generation.system
    if client is None:
        local = sum(estimate_tokens(p) for p in sample) * characters / max(1, sum(map(len, sample)))
        local += rows * (estimate_tokens(system) if system else 0)
        return TokenEstimate(
            int(local), "estimated locally at ~4 characters a token (no API key for countTokens)"
        )
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
