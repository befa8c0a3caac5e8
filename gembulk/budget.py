"""`--max-cost`: dispatch a request only while what was spent plus what is in flight stays under the cap."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass

from gembulk.errors import FatalAPIError
from gembulk.pricing import PriceTable
from gembulk.records import Usage
from gembulk.tokens import MEDIA_TOKENS, estimate_tokens

# Output tokens (thinking included) reserved for a request before any answer has shown how long the
# answers of this job are; --max-output-tokens lowers it.
DEFAULT_OUTPUT_GUESS = 1024


class BudgetReached(FatalAPIError):
    """The next request would pass --max-cost; finished rows are kept (exit 3)."""


@dataclass(frozen=True)
class Reservation:
    """What one request in flight holds of the budget: its estimated cost, and the output it counts on."""

    cost: float
    output_tokens: int
    why: str  # where output_tokens comes from, for the message at the cap


class Budget:
    """Reserves an estimate per request before it is sent and settles it with the real usage after.

    Invariant: spent + reserved <= cap. A request whose reservation does not fit beside those in flight
    waits for them to settle (their answers also sharpen the estimate); only when nothing is in flight
    and it still does not fit can it never be sent, and the run stops there. The output reserved is
    --max-output-tokens until the first answer (a true bound) or, without it, a guess; then the longest
    answer so far (thinking included), never more than --max-output-tokens, so that an answer passes its
    reservation only by being longer than any before it.
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
        self._longest: int | None = None  # output + thinking tokens of the longest answer so far
        self._in_flight = 0
        self._settled = asyncio.Event()
        self.refused: Reservation | None = None  # the reservation that could never fit

    def _expected_output(self) -> tuple[int, str]:
        if self._longest is not None:
            if self._max_output is not None and self._max_output < self._longest:
                return self._max_output, "--max-output-tokens"
            return self._longest, "the longest answer so far"
        if self._max_output is not None:  # a true bound: the first answers cannot pass the cap either
            return self._max_output, "--max-output-tokens"
        return DEFAULT_OUTPUT_GUESS, "a first guess, before any answer"

    def reservation(self, model: str, prompt: str, media_parts: int = 0) -> Reservation:
        output, why = self._expected_output()
        shared = self._shared(model) if self._shared is not None else Usage()
        guess = Usage(
            prompt_tokens=estimate_tokens(prompt)
            + self._system_tokens
            + media_parts * MEDIA_TOKENS
            + shared.prompt_tokens,
            output_tokens=output,
            cached_tokens=shared.cached_tokens,
        )
        return Reservation(self._prices.cost(model, guess) or 0.0, output, why)

    def try_reserve(self, reservation: Reservation) -> bool:
        if self.spent + self.reserved + reservation.cost > self.cap:
            return False
        self.reserved += reservation.cost
        self._in_flight += 1
        return True

    async def reserve(self, model: str, prompt: str, media_parts: int = 0) -> Reservation | None:
        """Hold this request's estimate, waiting for room; None when it can never fit under the cap."""
        while True:
            reservation = self.reservation(model, prompt, media_parts)
            if self.try_reserve(reservation):
                return reservation
            if self._in_flight == 0:
                self.refused = reservation
                return None
            # No await between the check and the wait: a settle cannot slip in unseen.
            self._settled.clear()
            await self._settled.wait()

    def settle(self, reservation: Reservation, model: str, usage: Usage | None) -> None:
        """The request is no longer in flight: release its reservation and count what it really cost
        (nothing when it got no answer)."""
        self._in_flight -= 1
        self.reserved = max(0.0, self.reserved - reservation.cost) if self._in_flight else 0.0
        if usage is not None:
            self.spent += self._prices.cost(model, usage) or 0.0
            output = usage.output_tokens + usage.thoughts_tokens
            self._longest = output if self._longest is None else max(self._longest, output)
        self._settled.set()

    def reached(self, rows_left: int) -> BudgetReached:
        message = (
            f"stopped at --max-cost {_usd(self.cap)}: spent {_usd(self.spent)}; {rows_left} rows not sent"
        )
        again = "run the same command again with a higher --max-cost to continue"
        hint = f"finished rows are kept; {again}"
        refused = self.refused
        if refused is not None:
            message += (
                f"; the next request needed {_usd(refused.cost)} reserved, for its prompt and "
                f"{refused.output_tokens:,} output tokens ({refused.why})"
            )
            if self._max_output is None:  # nothing bounds the answers: say what would
                hint = (
                    "pass --max-output-tokens N to bound each answer, and so what is reserved for it, or "
                    f"{again}; finished rows are kept"
                )
        return BudgetReached(message, hint=hint)


def _usd(amount: float) -> str:
    """Dollars with enough decimals to show two significant digits of small amounts ($0.000031)."""
    decimals = 4 if amount <= 0 else max(4, 1 - math.floor(math.log10(amount)))
    return f"${amount:.{decimals}f}"
