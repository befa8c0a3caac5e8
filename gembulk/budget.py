"""`--max-cost`: dispatch a request only while what was spent plus what is in flight stays under the cap."""

from __future__ import annotations

from collections.abc import Callable

from gembulk.errors import FatalAPIError
from gembulk.pricing import PriceTable
from gembulk.records import Usage
from gembulk.tokens import MEDIA_TOKENS, estimate_tokens

# Until answers come back, assume this many output tokens (thinking included) per request.
DEFAULT_OUTPUT_GUESS = 1024


class BudgetReached(FatalAPIError):
    """The next request would pass --max-cost; finished rows are kept (exit 3)."""


class Budget:
    """Reserves an estimate per request before it is sent and settles it with the real usage after.

    The estimate uses the prompt length and the mean output of the answers so far (the max output
    tokens, or a generous guess, before the first answer), so the cap holds even with many requests
    in flight.
    """

    def __init__(
        self,
        cap: float,
        prices: PriceTable,
        *,
        system: str | None,
        max_output_tokens: int | None,
        shared: Callable[[str], Usage] | None = None,
    ) -> None:
        self.cap = cap
        self.spent = 0.0
        self.reserved = 0.0
        self._prices = prices
        self._system_tokens = estimate_tokens(system) if system else 0
        # --context: the shared part of each request, as billed (its cached tokens at the cached price).
        # With it the system instruction is counted there (it is in the cache, or in the counted tokens).
        self._shared = shared
        if shared is not None:
            self._system_tokens = 0
        self._max_output = max_output_tokens
        self._answers = 0
        self._output_tokens = 0

    def _expected_output(self) -> int:
        if self._answers:
            mean = self._output_tokens / self._answers
            return int(min(mean, self._max_output) if self._max_output else mean) + 1
        return self._max_output or DEFAULT_OUTPUT_GUESS

    def estimate(self, model: str, prompt: str, media_parts: int = 0) -> float:
        shared = self._shared(model) if self._shared is not None else Usage()
        guess = Usage(
            prompt_tokens=estimate_tokens(prompt)
            + self._system_tokens
            + media_parts * MEDIA_TOKENS
            + shared.prompt_tokens,
            output_tokens=self._expected_output(),
            thoughts_tokens=0,
            cached_tokens=shared.cached_tokens,
        )
        return self._prices.cost(model, guess) or 0.0

    def try_reserve(self, estimate: float) -> bool:
        if self.spent + self.reserved + estimate > self.cap:
            return False
        self.reserved += estimate
        return True

    def release(self, estimate: float) -> None:
        """The request is no longer in flight (answered, failed or abandoned)."""
        self.reserved = max(0.0, self.reserved - estimate)

    def charge(self, model: str, usage: Usage | None) -> None:
        """Count what an answer really cost; it also sharpens the output estimate."""
        if usage is None:
            return
        self.spent += self._prices.cost(model, usage) or 0.0
        self._answers += 1
        self._output_tokens += usage.output_tokens + usage.thoughts_tokens

    def reached(self, rows_left: int) -> BudgetReached:
        return BudgetReached(
            f"stopped at --max-cost ${self.cap:.4f}: spent ${self.spent:.4f}; {rows_left} rows not sent",
            hint="finished rows are kept; run the same command again with a higher --max-cost to continue",
        )
