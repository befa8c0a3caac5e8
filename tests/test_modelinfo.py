"""Model limits (models.get through the real SDK, the shipped table), the output bound, the prompt-size rule,
and the screening stage that fails a request without sending it."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from gembulk.client import GeminiClient
from gembulk.errors import FatalAPIError, UsageError
from gembulk.modelinfo import (
    CLEARLY_OVER,
    PROMPT_TOO_LONG,
    check_output_limit,
    load_limit_table,
    look_up,
    model_limits,
    prompt_size_check,
)
from gembulk.outputs import Resume
from gembulk.prepare import prepare, request_source
from gembulk.records import Attachment, CallFailed, InputRow, ModelLimits, Outcome, PromptRequest, RowError
from gembulk.settings import GenerationSettings, RunOptions
from gembulk.stats import RunStats
from tests.cli_support import TEST_KEY, FakeAPI

LIMIT = 1_048_576


def request(prompt: str, model: str = "gemini-2.5-flash", attachments: int = 0) -> PromptRequest:
    media = tuple(Attachment("url", f"https://example.com/{n}.png", "photo") for n in range(attachments))
    return PromptRequest(InputRow(prompt[:8], {}, 2, 1), prompt, model, media)


class StubSeam:
    """Stands in for GeminiClient.model_limits only (the SDK itself is exercised against the fake below)."""

    def __init__(self, answers: dict[str, ModelLimits | CallFailed]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def model_limits(self, model: str, *, timeout: float | None) -> ModelLimits:
        self.asked.append(model)
        answer = self.answers[model]
        if isinstance(answer, CallFailed):
            raise answer
        return answer


def test_the_shipped_table_is_dated_and_matches_exact_names_and_numbered_versions_only() -> None:
    table = load_limit_table()
    assert table.date
    flash = table.limits_for("gemini-2.5-flash")
    assert flash is not None and (flash.input_tokens, flash.output_tokens) == (LIMIT, 65_536)
    assert table.limits_for("models/gemini-2.0-flash-001") == table.limits_for("gemini-2.0-flash")
    assert table.limits_for("gemini-2.0-flash").output_tokens == 8192  # type: ignore[union-attr]
    # another model of the family, with other limits: not guessed from a prefix
    assert table.limits_for("gemini-2.5-flash-image") is None
    assert table.limits_for("my-tuned-model") is None


async def test_models_get_wins_over_the_table_and_a_failure_falls_back_to_it() -> None:
    seam = StubSeam(
        {
            "gemini-2.5-flash": ModelLimits(1000, 10, "models.get"),
            "gemini-2.5-pro": CallFailed("UNAVAILABLE", "try later", code=503),
            "gemini-new": CallFailed("DEADLINE_EXCEEDED", "slow", transport=True),
        }
    )
    limits = await model_limits(seam, ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-new"])  # type: ignore[arg-type]
    assert limits["gemini-2.5-flash"] == ModelLimits(1000, 10, "models.get")
    assert limits["gemini-2.5-pro"].input_tokens == LIMIT and "table" in limits["gemini-2.5-pro"].source
    assert "gemini-new" not in limits  # neither knows it: unchecked
    assert seam.asked == ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-new"]
    assert "gemini-2.5-flash" in await model_limits(None, ["gemini-2.5-flash"])  # no key: the table


@pytest.mark.parametrize(
    ("failure", "hint"),
    [
        (CallFailed("NOT_FOUND", "Model is not found: models/gemini-nope", code=404), "-m"),
        (CallFailed("INVALID_ARGUMENT", "API key not valid.", code=400, reason="API_KEY_INVALID"), "key"),
        (CallFailed("PERMISSION_DENIED", "The caller does not have permission", code=403), "key"),
    ],
)
async def test_a_model_or_key_the_api_refuses_stops_before_any_row(failure: CallFailed, hint: str) -> None:
    with pytest.raises(FatalAPIError) as raised:
        await look_up(StubSeam({"gemini-nope": failure}), "gemini-nope")  # type: ignore[arg-type]
    assert raised.value.message.startswith(f"-m gemini-nope: {failure.code} {failure.status}")
    assert raised.value.hint is not None and hint in raised.value.hint


async def test_another_refusal_of_models_get_leaves_the_model_to_the_table() -> None:
    unserved = "The requested URL /v1/models/x was not found on this server."
    seam = StubSeam(
        {
            "odd": CallFailed("INVALID_ARGUMENT", "bad name", code=400),
            "x": CallFailed("NOT_FOUND", unserved, code=404),  # a gateway without models.get
        }
    )
    assert await look_up(seam, "odd") is None  # type: ignore[arg-type]
    assert await look_up(seam, "x") is None  # type: ignore[arg-type]
    assert await look_up(seam, "tunedModels/mine") is None  # type: ignore[arg-type]
    assert seam.asked == ["odd", "x"]  # a tuned model is not looked up


async def test_models_get_through_the_sdk_is_asked_once_per_model_and_process(fake: FakeAPI) -> None:
    settings = GenerationSettings()
    key = f"{TEST_KEY}-{uuid.uuid4().hex}"  # answers are kept per key: none from another test
    for _ in range(2):  # a second client in the same process asks nothing again
        async with GeminiClient(
            api_key=key, base_url=fake.url, max_connections=2, timeout=10, settings=settings
        ) as client:
            for _ in range(3):
                flash = await client.model_limits("gemini-2.5-flash", timeout=10)
                old = await client.model_limits("models/gemini-2.0-flash", timeout=10)
    assert (flash.input_tokens, flash.output_tokens, flash.source) == (LIMIT, 65_536, "models.get")
    assert old.output_tokens == 8192
    assert fake.stats()["models_get_requests"] == 2
    async with GeminiClient(
        api_key=TEST_KEY, base_url=fake.url, max_connections=2, timeout=10, settings=settings
    ) as client:
        with pytest.raises(CallFailed) as missing:
            await client.model_limits("gemini-9-nonexistent", timeout=10)
    assert missing.value.code == 404 and missing.value.status == "NOT_FOUND"


def test_an_output_bound_above_the_model_limit_is_refused() -> None:
    limits = {"gemini-2.0-flash": ModelLimits(LIMIT, 8192, "models.get")}
    check_output_limit(None, limits)
    check_output_limit(8192, limits)
    with pytest.raises(UsageError) as raised:
        check_output_limit(8193, limits)
    assert "8,192" in raised.value.message and "models.get" in raised.value.message
    check_output_limit(10**6, {"unknown": ModelLimits(None, None, "models.get")})


def test_only_prompts_clearly_over_the_input_limit_fail_and_near_ones_are_sent() -> None:
    check = prompt_size_check({"gemini-2.5-flash": ModelLimits(1000, 10, "models.get")}, system=None)
    assert check is not None
    assert check(request("x" * 4 * 1000)) is None  # at the limit: the server decides
    assert check(request("x" * int(4 * 1000 * (CLEARLY_OVER - 0.1)))) is None  # over, but not clearly
    failed = check(request("x" * 4 * 1000 * 3))
    assert failed is not None and failed.status == PROMPT_TOO_LONG and failed.code is None
    assert "3,001 tokens" in failed.message and "1,000" in failed.message
    assert check(request("x" * 4 * 1000 * 3, model="gemini-other")) is None  # unknown limit: unchecked


def test_the_system_instruction_and_attachments_count_towards_the_limit() -> None:
    limits = {"gemini-2.5-flash": ModelLimits(1000, 10, "models.get")}
    prompt = "x" * 4 * 1100  # 1,101 tokens: under the clear margin (1,200) alone
    assert prompt_size_check(limits, system=None)(request(prompt)) is None  # type: ignore[misc]
    with_system = prompt_size_check(limits, system="s" * 4 * 200)
    assert with_system is not None and with_system(request(prompt)) is not None
    alone = prompt_size_check(limits, system=None)
    assert alone is not None and alone(request(prompt, attachments=2)) is not None  # 2 x 258 more
    assert prompt_size_check({"m": ModelLimits(None, 10, "models.get")}, None) is None  # nothing to check


async def test_requests_the_check_refuses_fail_once_on_the_first_pass_and_never_reach_an_executor(
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,prompt\na,a\nl1,long 1\nb,b\nl2,long 2\nc,c\n", encoding="utf-8")
    options = RunOptions(input=str(path), api_key="k")
    prepared = await prepare(options)

    def check(item: PromptRequest) -> RowError | None:
        return RowError(PROMPT_TOO_LONG, "too long") if item.prompt.startswith("long") else None

    emitted: list[tuple[str, Any]] = []

    async def emit(item: PromptRequest, outcome: Outcome) -> None:
        assert outcome.error is not None
        emitted.append((item.prompt, outcome.error.status))

    stats = RunStats(total=prepared.total)
    requests = request_source(prepared, options, Resume(prepared.existing), stats, unsent=emit, check=check)
    assert [r.prompt async for r in requests()] == ["a", "b", "c"]
    assert emitted == [("long 1", PROMPT_TOO_LONG), ("long 2", PROMPT_TOO_LONG)]
    assert [r.prompt async for r in requests()] == ["a", "b", "c"]  # a second pass (batch) says nothing
    assert len(emitted) == 2
