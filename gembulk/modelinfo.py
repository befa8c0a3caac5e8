"""What is known of each model before the first request: its token limits (models.get, once per model and
process, else the shipped table), the settings they refuse, and the prompts clearly too long to send."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from gembulk.client import GeminiClient
from gembulk.errors import FatalAPIError, UsageError
from gembulk.executors.online import fatal_error
from gembulk.records import Attachment, CallFailed, ModelLimits, PromptRequest, RowError
from gembulk.retry import Verdict, classify
from gembulk.tokens import MEDIA_TOKENS, estimate_tokens

logger = logging.getLogger(__name__)

PROMPT_TOO_LONG = "PROMPT_TOO_LONG"
# The estimate is about four characters a token: close for English (Google says "about 4"), low for
# Chinese, Japanese, digits or code (the safe side here), and high only for text made of long runs of
# one character. So a prompt is failed unsent only when its estimate is more than 1.2 times the limit,
# i.e. when it could fit only at more than 4.8 characters a token (English averages about 4): a 5 MB
# cell of English is caught, and nearer the limit the server decides.
CLEARLY_OVER = 1.2
# One models.get: a small answer. When it does not come in time the run goes on with the shipped table.
LOOKUP_TIMEOUT = 15.0


@dataclass(frozen=True)
class LimitTable:
    """The shipped limits (gembulk/data/models.json), by exact model name, with their date."""

    models: dict[str, ModelLimits]
    date: str

    def limits_for(self, model: str) -> ModelLimits | None:
        """The exact name, or a numbered version of it ("gemini-2.0-flash-001"); nothing looser, since
        "gemini-2.5-flash-image" has other limits than "gemini-2.5-flash"."""
        name = model.removeprefix("models/")
        if name in self.models:
            return self.models[name]
        base, _, version = name.rpartition("-")
        return self.models.get(base) if version.isdigit() else None


def load_limit_table() -> LimitTable:
    text = resources.files("gembulk").joinpath("data/models.json").read_text(encoding="utf-8")
    data = json.loads(text)
    source = f"gembulk's table of {data['date']}"
    models = {
        name: ModelLimits(fields.get("input"), fields.get("output"), source)
        for name, fields in data["models"].items()
    }
    return LimitTable(models, data["date"])


async def look_up(client: GeminiClient, model: str) -> ModelLimits | None:
    """models.get for one model. A model the API does not have, or a key it refuses, stops the run
    (exit 3) before any row is sent; any other failure leaves the model to the shipped table (None)."""
    if model.startswith("tunedModels/"):
        return None  # a tuned model's get answers another shape; left unchecked
    try:
        return await client.model_limits(model, timeout=LOOKUP_TIMEOUT)
    except CallFailed as failure:
        if classify(failure) is Verdict.FATAL and not _route_not_served(failure):
            fatal = fatal_error(failure)
            raise FatalAPIError(f"-m {model}: {fatal.message}", hint=fatal.hint) from failure
        logger.debug("models.get %s failed (%s); going on with the shipped limits", model, failure)
        return None


def _route_not_served(failure: CallFailed) -> bool:
    """A 404 for the URL itself ("The requested URL … was not found on this server"), not for the model:
    an endpoint or gateway (--base-url) that serves generateContent but not models.get. The first
    request will say whether the model exists."""
    return failure.code == 404 and "was not found on this server" in failure.message


async def model_limits(
    client: GeminiClient | None, models: Sequence[str], table: LimitTable | None = None
) -> dict[str, ModelLimits]:
    """Each model's limits: models.get's answer (with a client), else the shipped table's; a model
    neither knows is left out, and nothing is checked for it."""
    table = table or load_limit_table()
    found: list[ModelLimits | None] = [None] * len(models)
    if client is not None:
        found = list(await asyncio.gather(*(look_up(client, model) for model in models)))
    limits = {}
    for model, answer in zip(models, found, strict=True):
        known = answer or table.limits_for(model)
        if known is not None:
            limits[model] = known
    return limits


def check_output_limit(max_output_tokens: int | None, limits: dict[str, ModelLimits]) -> None:
    """--max-output-tokens above what a model can answer: refused before anything is sent (exit 2)."""
    if max_output_tokens is None:
        return
    for model, known in limits.items():
        if known.output_tokens is not None and max_output_tokens > known.output_tokens:
            raise UsageError(
                f"--max-output-tokens {max_output_tokens}: {model} answers at most "
                f"{known.output_tokens:,} tokens ({known.source})",
                hint=f"pass --max-output-tokens {known.output_tokens} or less, or leave it out",
            )


def estimated_prompt_tokens(system: str | None, prompt: str, attachments: Sequence[Attachment]) -> int:
    """The input tokens of one request as the size check estimates them: system instruction, prompt, and
    ~258 a medium (an image's count; others cost more, so this errs low). The one estimate it uses."""
    text = estimate_tokens(system) if system else 0
    return text + estimate_tokens(prompt) + MEDIA_TOKENS * len(attachments)


@dataclass(frozen=True)
class PromptSizeCheck:
    """Fails, unsent, a request whose prompt is clearly over its model's input limit (see CLEARLY_OVER)."""

    input_limits: dict[str, int]
    system: str | None
    shared_tokens: int = 0  # --context: the shared part every request carries (cached or not, it counts)

    def __call__(self, request: PromptRequest) -> RowError | None:
        limit = self.input_limits.get(request.model)
        if limit is None:
            return None
        tokens = (
            estimated_prompt_tokens(self.system, request.prompt, request.attachments) + self.shared_tokens
        )
        if tokens <= limit * CLEARLY_OVER:
            return None
        return RowError(
            PROMPT_TOO_LONG,
            f"the prompt is about {tokens:,} tokens (estimated at ~4 characters a token), clearly over "
            f"{request.model}'s input limit of {limit:,}; not sent",
        )


def prompt_size_check(limits: dict[str, ModelLimits], system: str | None) -> PromptSizeCheck | None:
    """The size check for these models, or None when no input limit is known (nothing to check)."""
    inputs = {model: known.input_tokens for model, known in limits.items() if known.input_tokens}
    return PromptSizeCheck(inputs, system) if inputs else None


async def request_checks(
    client: GeminiClient | None, models: Sequence[str], system: str | None, max_output_tokens: int | None
) -> PromptSizeCheck | None:
    """Before the first request: look the models up, refuse an output bound they cannot answer, and
    return the per-row size check (None when there is nothing to check)."""
    limits = await model_limits(client, models)
    check_output_limit(max_output_tokens, limits)
    return prompt_size_check(limits, system)
