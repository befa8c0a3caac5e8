"""--max-cost's budget alone: what is reserved, waiting for room, the invariant, the message at the cap."""

from __future__ import annotations

import asyncio
import random

import pytest

from gembulk.budget import DEFAULT_OUTPUT_GUESS, Budget
from gembulk.pricing import load_prices
from gembulk.records import Usage

MODEL = "gemini-2.5-flash"  # $0.30 in, $2.50 out per million tokens
PROMPT = "row number 1"  # about 4 tokens


def budget(cap: float, max_output_tokens: int | None = None) -> Budget:
    return Budget(cap, load_prices(), system=None, max_output_tokens=max_output_tokens)


def answer(output: int) -> Usage:
    return Usage(prompt_tokens=4, output_tokens=output, thoughts_tokens=0, total_tokens=4 + output)


def test_before_any_answer_a_guess_is_reserved_or_the_bound_given() -> None:
    unbounded = budget(1.0).reservation(MODEL, PROMPT)
    assert unbounded.output_tokens == DEFAULT_OUTPUT_GUESS and "guess" in unbounded.why
    assert unbounded.cost == pytest.approx((4 * 0.30 + DEFAULT_OUTPUT_GUESS * 2.50) / 1e6)
    bounded = budget(1.0, max_output_tokens=20).reservation(MODEL, PROMPT)
    assert (bounded.output_tokens, bounded.why) == (20, "--max-output-tokens")
    # --max-output-tokens is a true bound, so it is what is reserved even when larger than the guess
    assert budget(1.0, max_output_tokens=8192).reservation(MODEL, PROMPT).output_tokens == 8192


def test_answers_teach_the_longest_output_never_above_the_bound() -> None:
    spend = budget(1.0, max_output_tokens=50)
    first = spend.reservation(MODEL, PROMPT)
    assert spend.try_reserve(first)
    spend.settle(first, MODEL, answer(7))
    assert spend.reservation(MODEL, PROMPT).output_tokens == 7
    second = spend.reservation(MODEL, PROMPT)
    assert spend.try_reserve(second)
    spend.settle(second, MODEL, answer(80))  # longer than the bound said: the bound still caps it
    assert spend.reservation(MODEL, PROMPT).output_tokens == 50


async def test_a_request_waits_for_room_instead_of_stopping_the_run() -> None:
    # The case: $0.01 and no --max-output-tokens. Each request reserves ~$0.0026 before the
    # first answer, so three fit; the fourth used to stop the run. Now it waits for an answer.
    spend = budget(0.01)
    held = [await spend.reserve(MODEL, PROMPT) for _ in range(3)]
    assert all(held) and spend.spent + spend.reserved <= spend.cap
    fourth = asyncio.create_task(spend.reserve(MODEL, PROMPT))
    await asyncio.sleep(0)
    assert not fourth.done()  # no room while three are in flight
    first = held[0]
    assert first is not None
    spend.settle(first, MODEL, answer(10))  # a short answer: the next reservations are small
    reservation = await asyncio.wait_for(fourth, 1)
    assert reservation is not None and reservation.output_tokens == 10
    more = [await spend.reserve(MODEL, PROMPT) for _ in range(50)]
    assert all(more) and spend.spent + spend.reserved <= spend.cap


async def test_only_a_request_that_can_never_fit_stops_the_run() -> None:
    spend = budget(0.002)  # less than one first guess
    assert await spend.reserve(MODEL, PROMPT) is None
    assert spend.refused is not None and spend.refused.output_tokens == DEFAULT_OUTPUT_GUESS
    assert spend.reserved == 0.0


async def test_waiters_are_woken_by_a_request_that_got_no_answer() -> None:
    spend = budget(0.006)  # two first guesses fit, a third does not
    first = await spend.reserve(MODEL, PROMPT)
    second = await spend.reserve(MODEL, PROMPT)
    assert first is not None and second is not None
    third = asyncio.create_task(spend.reserve(MODEL, PROMPT))
    await asyncio.sleep(0)
    spend.settle(first, MODEL, None)  # failed or abandoned: nothing spent, nothing learned
    assert await asyncio.wait_for(third, 1) is not None


async def test_spent_plus_reserved_never_passes_the_cap() -> None:
    rng = random.Random(7)
    spend = budget(0.05, max_output_tokens=400)
    in_flight = []
    for _ in range(2000):
        if in_flight and (rng.random() < 0.5 or len(in_flight) > 40):
            reservation = in_flight.pop(rng.randrange(len(in_flight)))
            usage = answer(rng.randint(1, reservation.output_tokens)) if rng.random() < 0.9 else None
            spend.settle(reservation, MODEL, usage)
        else:
            candidate = spend.reservation(MODEL, "x" * rng.randint(16, 400))  # >= 4 tokens
            if spend.try_reserve(candidate):
                in_flight.append(candidate)
        assert spend.spent + spend.reserved <= spend.cap + 1e-12
    # answers never longer than their bound: what was really spent stays under the cap too
    assert spend.spent <= spend.cap


def test_the_message_at_the_cap_says_what_was_reserved_and_what_bounds_it() -> None:
    unbounded = budget(0.002)
    unbounded.refused = unbounded.reservation(MODEL, PROMPT)
    reached = unbounded.reached(rows_left=40)
    assert "40 rows not sent" in reached.message
    assert "needed $0.0026 reserved" in reached.message and "1,024 output tokens" in reached.message
    assert reached.hint is not None and "--max-output-tokens N" in reached.hint
    assert "higher --max-cost" in reached.hint and "finished rows are kept" in reached.hint

    bounded = budget(0.00001, max_output_tokens=20)
    bounded.refused = bounded.reservation(MODEL, PROMPT)
    reached = bounded.reached(rows_left=3)
    assert "20 output tokens (--max-output-tokens)" in reached.message
    assert reached.hint is not None and "--max-output-tokens" not in reached.hint
