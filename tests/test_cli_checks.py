"""Checks before spending, end to end through the CLI against the fake: settings the API would refuse, the
model looked up before any row, prompts too long to send, --max-cost's reservations, a resumed output
in the other format."""

from __future__ import annotations

import json
import math
import subprocess
import time
from pathlib import Path

import pytest

from gembulk.cli.run_options import check_request_settings
from gembulk.errors import UsageError
from gembulk.fake import expected_text
from gembulk.pricing import load_prices
from gembulk.records import Usage
from tests.cli_support import FakeAPI, by_id, read_jsonl, run_cli, write_csv

POLL = ["--poll-interval", "0.05", "--poll-max-interval", "0.1"]
LIMIT = 1_048_576  # gemini-2.5-flash's inputTokenLimit; the fake counts four characters a token
HUGE = 4 * LIMIT * 2 + 4096  # characters: clearly more than the limit, failed unsent
NEAR = 4 * LIMIT + 400_000  # characters: over the limit, but not clearly: sent, and the server refuses it


def make_input(tmp_path: Path, n: int, big: dict[int, int] | None = None, name: str = "in.csv") -> Path:
    big = big or {}
    rows = [
        {"id": f"r{i:03d}", "text": "w" * big[i] if i in big else f"row number {i}"} for i in range(1, n + 1)
    ]
    return write_csv(tmp_path / name, rows)


def assert_refused_before_anything(
    result: subprocess.CompletedProcess[str], fake: FakeAPI, code: int
) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert fake.stats()["generate_requests"] == 0


# -- settings the API would refuse for every row: exit 2, one line, nothing sent --------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--temperature", "99"], "--temperature must be between 0 and 2, got 99"),
        (["--temperature", "-0.5"], "--temperature must be between 0 and 2"),
        (["--temperature", "nan"], "--temperature must be between 0 and 2"),
        (["--max-output-tokens", "0"], "--max-output-tokens must be at least 1"),
        (["-m", ""], "not a model name"),
        (["-m", "gemini-2.5-flash?alt=sse"], "not a model name"),
        (["-m", "gemini 2.5 flash"], "not a model name"),
    ],
)
def test_settings_the_api_refuses_exit_2_before_anything(
    fake: FakeAPI, tmp_path: Path, args: list[str], needle: str
) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(make_input(tmp_path, 3)), "-t", "{text}", "-o", str(out), *args], fake.url)
    assert_refused_before_anything(result, fake, 2)
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert fake.stats()["models_get_requests"] == 0  # refused without the network
    assert not out.exists()


def test_temperature_bounds_are_accepted() -> None:
    check_request_settings(["gemini-2.5-flash", "models/gemini-2.5-pro"], 0.0, 1)
    check_request_settings(["tunedModels/mine-123"], 2.0, None)
    for bad in (math.inf, -math.inf, 2.0001):
        with pytest.raises(UsageError):
            check_request_settings(["gemini-2.5-flash"], bad, None)


def test_an_output_bound_above_the_models_limit_exits_2_before_any_row(fake: FakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    path = make_input(tmp_path, 3)
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(out), "--max-output-tokens", "100000"], fake.url
    )
    assert_refused_before_anything(result, fake, 2)
    assert "gemini-2.5-flash answers at most 65,536 tokens (models.get)" in result.stderr
    assert not out.exists()
    # 2.0 Flash answers at most 8,192: its limit comes from models.get too
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-m", "gemini-2.0-flash", "--max-output-tokens", "9000"], fake.url
    )
    assert result.returncode == 2 and "8,192" in result.stderr
    ok = run_cli(["run", str(path), "-t", "{text}", "--max-output-tokens", "65536"], fake.url)
    assert ok.returncode == 0, ok.stderr


# -- the model looked up once before the first request ---------------------------------------------------


def test_an_unknown_model_exits_3_before_any_row_and_leaves_no_output(fake: FakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli(
        ["run", str(make_input(tmp_path, 40)), "-t", "{text}", "-o", str(out), "-m", "gemini-9-nonexistent"],
        fake.url,
    )
    assert_refused_before_anything(result, fake, 3)
    assert "-m gemini-9-nonexistent: 404 NOT_FOUND" in result.stderr
    assert "check the model name (-m)" in result.stderr
    assert "run the same command again" not in result.stderr  # nothing to resume: nothing ran
    assert fake.stats()["models_get_requests"] == 1
    assert not out.exists()


def test_each_model_is_looked_up_once_per_run(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 30)
    models = ["-m", "gemini-2.5-flash", "-m", "gemini-2.0-flash"]
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(tmp_path / "o.jsonl"), *models], fake.url)
    assert result.returncode == 0, result.stderr
    stats = fake.stats()
    assert stats["generate_requests"] == 60 and stats["models_get_requests"] == 2


def test_a_dry_run_with_a_key_checks_the_model_too(fake: FakeAPI, tmp_path: Path) -> None:
    result = run_cli(
        ["run", str(make_input(tmp_path, 3)), "-t", "{text}", "--dry-run", "-m", "gemini-nope"], fake.url
    )
    assert result.returncode == 3 and "404 NOT_FOUND" in result.stderr
    assert fake.stats()["generate_requests"] == 0


# -- prompts over the model's input limit -----------------------------------------------------------------


def test_a_prompt_clearly_over_the_input_limit_fails_unsent_and_a_near_one_is_sent(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 4, big={2: HUGE, 3: NEAR})
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(out)], fake.url)
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    assert len(records) == 4
    huge = records["r002"]["error"]
    assert huge["status"] == "PROMPT_TOO_LONG" and huge["code"] is None
    assert "2,098,177 tokens" in huge["message"] and "1,048,576" in huge["message"]
    # near the limit the server decides: it was sent, and the fake refused it as the real API does
    assert records["r003"]["error"]["code"] == 400
    assert "exceeds the maximum number of tokens" in records["r003"]["error"]["message"]
    assert records["r001"]["response"] == expected_text("row number 1")
    assert fake.stats()["generate_requests"] == 3  # the huge one was never sent
    assert "PROMPT_TOO_LONG 1" in result.stderr

    fake.reset()  # the re-run retries the failed rows; the huge one fails again, still unsent
    again = run_cli(["run", str(path), "-t", "{text}", "-o", str(out)], fake.url)
    assert again.returncode == 1, again.stderr
    assert fake.stats()["generate_requests"] == 1
    assert by_id(read_jsonl(out))["r002"]["error"]["status"] == "PROMPT_TOO_LONG"
    assert len(read_jsonl(out)) == 4


@pytest.mark.parametrize("key", ["with key", "without key"])
def test_dry_run_counts_the_prompts_too_long_to_send(fake: FakeAPI, tmp_path: Path, key: str) -> None:
    path = make_input(tmp_path, 4, big={2: HUGE})
    env = {} if key == "with key" else {"GEMINI_API_KEY": None}
    result = run_cli(["run", str(path), "-t", "{text}", "--dry-run"], fake.url, **env)
    assert result.returncode == 0, result.stderr
    assert "4 rows in" in result.stderr and "3 to send, 1 too long to send (PROMPT_TOO_LONG)" in result.stderr
    assert "more characters)" not in result.stderr  # the huge prompt is not among the ones shown
    assert fake.stats()["generate_requests"] == 0
    assert fake.stats()["models_get_requests"] == (1 if key == "with key" else 0)


def test_a_batch_leaves_the_prompt_too_long_out_of_its_job(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 4, big={2: HUGE})
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "--batch", *POLL], fake.url)
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    assert len(records) == 4 and records["r002"]["error"]["status"] == "PROMPT_TOO_LONG"
    assert all(records[i]["error"] is None for i in ("r001", "r003", "r004"))
    state = json.loads(Path(f"{out}.gembulk-batch.json").read_text())
    assert [job["rows"] for job in state["jobs"]] == [3]  # the job never held it


def test_detach_writes_the_prompt_too_long_and_the_fetch_keeps_one_record(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 4, big={2: HUGE})
    out = tmp_path / "out.jsonl"
    detached = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--detach"], fake.url)
    assert detached.returncode == 0, detached.stderr  # submitted; the fetch reports the failed row
    assert "1 rows failed unsent (1 PROMPT_TOO_LONG)" in detached.stderr
    assert "batch job(s) for 3 rows" in detached.stderr
    assert [r["id"] for r in read_jsonl(out)] == ["r002"]
    deadline = time.monotonic() + 20
    while (fetched := run_cli(["batch", "fetch", str(out)], fake.url)).returncode == 4:
        assert time.monotonic() < deadline, fetched.stderr
        time.sleep(0.2)
    assert fetched.returncode == 1, fetched.stderr
    records = read_jsonl(out)
    assert sorted(r["id"] for r in records) == ["r001", "r002", "r003", "r004"]
    assert by_id(records)["r002"]["error"]["status"] == "PROMPT_TOO_LONG"


# -- --max-cost ------------------------------------------------------------------------------------------


def records_cost(records: list[dict]) -> float:
    prices = load_prices()
    return sum(prices.cost(r["model"], Usage(**r["usage"])) or 0.0 for r in records if r["usage"])


def test_max_cost_without_an_output_bound_waits_for_answers_instead_of_stopping(
    fake: FakeAPI, tmp_path: Path
) -> None:
    # Each first request reserves ~1,024 output tokens ($0.0026): at $0.01 three fit at once. The run
    # used to stop there, after 3 rows; now the rest wait for the first answers, which are short.
    fake.configure(latency=0.05)
    out = tmp_path / "out.jsonl"
    result = run_cli(
        [
            "run",
            str(make_input(tmp_path, 40)),
            "-t",
            "{text}",
            "-o",
            str(out),
            "-c",
            "8",
            "--max-cost",
            "0.01",
        ],
        fake.url,
    )
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == 40 and records_cost(records) <= 0.01


def test_max_cost_stop_says_what_each_request_reserved_and_what_to_pass(
    fake: FakeAPI, tmp_path: Path
) -> None:
    out = tmp_path / "out.jsonl"
    path = make_input(tmp_path, 10)
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "--max-cost", "0.002"], fake.url)
    assert result.returncode == 3, result.stderr
    assert "the next request needed $0.0026 reserved" in result.stderr
    assert "1,024 output tokens (a first guess, before any answer)" in result.stderr
    assert "pass --max-output-tokens N" in result.stderr
    assert fake.stats()["generate_requests"] == 0  # it could never fit: nothing was sent
    bounded_out = tmp_path / "bounded.jsonl"
    bounded = run_cli(
        [
            "run",
            str(path),
            "-t",
            "{text}",
            "-o",
            str(bounded_out),
            "--max-cost",
            "0.002",
            "--max-output-tokens",
            "50",
        ],
        fake.url,
    )
    assert bounded.returncode == 0, bounded.stderr
    assert len(read_jsonl(bounded_out)) == 10


# -- a resumed output written in the other format --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "written", "asked"), [("out.jsonl", "jsonl", "csv"), ("out.csv", "csv", "jsonl")]
)
def test_resuming_in_the_other_format_names_the_format_it_was_written_in(
    fake: FakeAPI, tmp_path: Path, name: str, written: str, asked: str
) -> None:
    path = make_input(tmp_path, 3)
    out = tmp_path / name
    first = run_cli(["run", str(path), "-t", "{text}", "-o", str(out)], fake.url)
    assert first.returncode == 0, first.stderr
    before = out.read_bytes()
    fake.reset()
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "--output-format", asked], fake.url)
    assert_refused_before_anything(result, fake, 2)
    assert f"{out} was written as {written}; pass --output-format {written} or a new -o" in result.stderr
    assert out.read_bytes() == before
    again = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "--output-format", written], fake.url)
    assert again.returncode == 0 and fake.stats()["generate_requests"] == 0


def test_limits_table_and_fake_catalog_agree() -> None:
    from gembulk.fake.models import CATALOG
    from gembulk.modelinfo import load_limit_table

    for name, limits in load_limit_table().models.items():
        spec = CATALOG.get(name)
        if spec is not None:
            assert (limits.input_tokens, limits.output_tokens) == (spec.input_limit, spec.output_limit), name
    assert json.loads((Path(__file__).parent.parent / "gembulk" / "data" / "models.json").read_text())[
        "source"
    ]
