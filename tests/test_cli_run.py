"""`gembulk run` end to end: the installed CLI against the fake API over real HTTP."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from gembulk.fake import expected_text
from tests.cli_support import TEST_KEY, FakeAPI, by_id, read_jsonl, run_cli, write_csv

RECORD_KEYS = ["id", "response", "error", "finish_reason", "usage", "model"]


def questions(tmp_path: Path, n: int = 5, marker: dict[int, str] | None = None) -> Path:
    marker = marker or {}
    rows = [
        {"id": f"q{i}", "topic": f"topic {i}", "text": f"question {i}{marker.get(i, '')}"}
        for i in range(1, n + 1)
    ]
    return write_csv(tmp_path / "in.csv", rows)


def stdout_records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_csv_to_stdout_one_record_per_row_with_expected_answers(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 6)
    result = run_cli(["run", str(path), "-t", "Answer briefly: {text} ({topic})"], fake.url)
    assert result.returncode == 0, result.stderr
    records = stdout_records(result.stdout)
    assert sorted(r["id"] for r in records) == [f"q{i}" for i in range(1, 7)]
    for record in records:
        assert list(record)[:6] == RECORD_KEYS
        n = record["id"][1:]
        assert record["response"] == expected_text(f"Answer briefly: question {n} (topic {n})")
        assert record["error"] is None
        assert record["finish_reason"] == "STOP"
        assert record["model"] == "gemini-2.5-flash"
        assert (
            record["usage"]["prompt_tokens"] > 0
            and record["usage"]["total_tokens"] >= record["usage"]["prompt_tokens"]
        )
        assert record["topic"] == f"topic {n}" and record["text"] == f"question {n}"  # input fields carried
    assert "6 ok, 0 failed" in result.stderr
    assert fake.stats()["generate_requests"] == 6


def test_jsonl_prompt_field_txt_and_tsv_inputs(fake: FakeAPI, tmp_path: Path) -> None:
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text('{"id": 7, "prompt": "seven"}\n\n{"id": 8, "prompt": "eight"}\n', encoding="utf-8")
    result = run_cli(["run", str(jsonl)], fake.url)
    assert result.returncode == 0, result.stderr
    assert {r["id"]: r["response"] for r in stdout_records(result.stdout)} == {
        "7": expected_text("seven"),
        "8": expected_text("eight"),
    }

    txt = tmp_path / "p.txt"
    txt.write_text("alpha\n\nbeta\n", encoding="utf-8")
    result = run_cli(["run", str(txt), "-t", "Say {prompt}"], fake.url)
    assert result.returncode == 0, result.stderr
    assert {r["id"]: r["response"] for r in stdout_records(result.stdout)} == {
        "1": expected_text("Say alpha"),
        "2": expected_text("Say beta"),
    }

    tsv = tmp_path / "p.tsv"
    tsv.write_text("key\tq\nk1\tone, two\n", encoding="utf-8")
    result = run_cli(["run", str(tsv), "--id-column", "key", "--prompt-column", "q"], fake.url)
    assert result.returncode == 0, result.stderr
    assert stdout_records(result.stdout)[0]["id"] == "k1"
    assert stdout_records(result.stdout)[0]["response"] == expected_text("one, two")


def test_stdin_pipe_and_chained_runs(fake: FakeAPI, tmp_path: Path) -> None:
    first = run_cli(
        ["run", "-", "--input-format", "csv", "-t", "Q: {text}"],
        fake.url,
        stdin="id,text\na,hello\nb,world\n",
    )
    assert first.returncode == 0, first.stderr
    second = run_cli(["run", "-", "-t", "Check this answer: {response}"], fake.url, stdin=first.stdout)
    assert second.returncode == 0, second.stderr
    chained = by_id(stdout_records(second.stdout))
    assert chained["a"]["response"] == expected_text(f"Check this answer: {expected_text('Q: hello')}")
    assert chained["b"]["text"] == "world"  # the original input fields travel along the chain


def test_csv_output_file(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 3)
    out = tmp_path / "out.csv"
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(out)], fake.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text(encoding="utf-8"))))
    assert sorted(r["id"] for r in rows) == ["q1", "q2", "q3"]
    assert {r["id"]: r["response"] for r in rows}["q2"] == expected_text("question 2")
    assert all(r["error_status"] == "" for r in rows)


@pytest.mark.parametrize(
    ("marker", "status"),
    [
        ("[[block]]", "BLOCKED_PROHIBITED_CONTENT"),
        ("[[safety]]", "SAFETY"),
        ("[[recitation]]", "RECITATION"),
        ("[[max_tokens]]", "MAX_TOKENS"),
        ("[[empty]]", "EMPTY_RESPONSE"),
        ("[[invalid]]", "INVALID_ARGUMENT"),
    ],
)
def test_content_failures_are_failed_rows_not_retried(
    fake: FakeAPI, tmp_path: Path, marker: str, status: str
) -> None:
    path = questions(tmp_path, 3, {2: f" {marker}"})
    result = run_cli(["run", str(path), "-t", "{text}"], fake.url)
    assert result.returncode == 1, result.stderr
    records = by_id(stdout_records(result.stdout))
    failed = records["q2"]
    assert failed["response"] is None
    assert failed["error"]["status"] == status
    assert failed["error"]["message"]
    assert records["q1"]["error"] is None and records["q3"]["error"] is None
    assert fake.stats()["by_prompt"][f"question 2 {marker}"] == 1  # never retried: it costs money


@pytest.mark.parametrize(
    "marker", ["[[fail:503:2]]", "[[fail:500:1]]", "[[fail:429:1]]", "[[drop:1]]", "[[fail:502:1]]"]
)
def test_transient_failures_are_retried_to_success(fake: FakeAPI, tmp_path: Path, marker: str) -> None:
    path = questions(tmp_path, 2, {1: f" {marker}"})
    result = run_cli(["run", str(path), "-t", "{text}"], fake.url)
    assert result.returncode == 0, result.stderr
    records = by_id(stdout_records(result.stdout))
    assert records["q1"]["response"] == expected_text(f"question 1 {marker}")
    failures = int(marker.strip("[]").split(":")[-1])
    assert fake.stats()["by_prompt"][f"question 1 {marker}"] == failures + 1


def test_retries_are_bounded_by_max_attempts(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 2, {1: " [[fail:503:9]]"})
    result = run_cli(["run", str(path), "-t", "{text}", "--max-attempts", "2"], fake.url)
    assert result.returncode == 1
    record = by_id(stdout_records(result.stdout))["q1"]
    assert record["error"] == {"code": 503, "status": "UNAVAILABLE", "message": record["error"]["message"]}
    assert fake.stats()["by_prompt"]["question 1 [[fail:503:9]]"] == 2


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        ([], {"GEMINI_API_KEY": "bad-key"}, "API key not valid"),
        (["-m", "gemini-9-nonexistent"], {}, "NOT_FOUND"),
        (["-m", "gemini-denied-model"], {}, "PERMISSION_DENIED"),
    ],
)
def test_fatal_api_conditions_exit_3_at_once(
    fake: FakeAPI, tmp_path: Path, args: list[str], env: dict, needle: str
) -> None:
    path = questions(tmp_path, 40)
    result = run_cli(["run", str(path), "-t", "{text}", "-c", "2", *args], fake.url, **env)
    assert result.returncode == 3, result.stderr
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert fake.stats()["generate_requests"] <= 4  # stopped at once, not after 40 rows


def test_per_day_quota_stops_with_finished_rows_kept(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(rpd=5)
    path = questions(tmp_path, 12)
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "-c", "1"], fake.url)
    assert result.returncode == 3, result.stderr
    assert "PerDay" in result.stderr or "quota" in result.stderr.lower()
    records = read_jsonl(out)
    assert len(records) == 5 and all(r["error"] is None for r in records)
    assert "run the same command again" in result.stderr


@pytest.mark.timing(alone=True)
def test_quota_429s_cool_down_and_every_row_succeeds(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(rpm=5, latency=0.05)  # 5 requests per 1-second window
    path = questions(tmp_path, 20)
    result = run_cli(["run", str(path), "-t", "{text}", "-c", "16"], fake.url)
    assert result.returncode == 0, result.stderr
    assert len(stdout_records(result.stdout)) == 20
    stats = fake.stats()
    # the first burst meets the quota; after that the learned pace keeps 429s rare
    assert stats["rate_limited"] <= 16
    assert stats["requests_by_status"]["200"] == 20


@pytest.mark.timing(alone=True)
def test_user_rpm_paces_requests_without_429(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(rpm=5)
    path = questions(tmp_path, 10)
    result = run_cli(["run", str(path), "-t", "{text}", "--rpm", "290"], fake.url)
    assert result.returncode == 0, result.stderr
    assert fake.stats()["rate_limited"] == 0


def test_json_schema_adds_parsed(fake: FakeAPI, tmp_path: Path) -> None:
    schema = tmp_path / "schema.json"
    schema.write_text(
        json.dumps(
            {
                "type": "object",
                "properties": {"label": {"type": "string"}, "score": {"type": "integer"}},
                "required": ["label", "score"],
            }
        )
    )
    path = questions(tmp_path, 2)
    result = run_cli(["run", str(path), "-t", "{text}", "--json-schema", str(schema)], fake.url)
    assert result.returncode == 0, result.stderr
    for record in stdout_records(result.stdout):
        assert isinstance(record["parsed"], dict)
        assert isinstance(record["parsed"]["label"], str) and isinstance(record["parsed"]["score"], int)
        assert json.loads(record["response"]) == record["parsed"]


def test_progress_json_lines_on_stderr_and_only_records_on_stdout(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.3)
    path = questions(tmp_path, 8)
    result = run_cli(["run", str(path), "-t", "{text}", "--progress", "json", "-c", "2"], fake.url)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert events[-1]["event"] == "summary" and events[-1]["ok"] == 8
    assert any(e["event"] == "progress" for e in events)
    assert len(stdout_records(result.stdout)) == 8


def test_plain_progress_when_not_a_terminal_and_quiet_summary(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 2)
    loud = run_cli(["run", str(path), "-t", "{text}"], fake.url)
    assert "gembulk: done: 2 ok, 0 failed" in loud.stderr
    assert "\x1b[" not in loud.stderr  # no terminal escapes in logs
    quiet = run_cli(["run", str(path), "-t", "{text}", "-q"], fake.url)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_dry_run_sends_nothing(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 7)
    result = run_cli(["run", str(path), "-t", "Tell me: {text}", "--dry-run"], fake.url, GEMINI_API_KEY=None)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "Tell me: question 1" in result.stderr and "Tell me: question 4" not in result.stderr
    assert "7 rows" in result.stderr
    assert fake.stats()["generate_requests"] == 0


def test_vertex_environment_does_not_switch_modes(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 2)
    result = run_cli(
        ["run", str(path), "-t", "{text}"],
        fake.url,
        GOOGLE_GENAI_USE_VERTEXAI="true",
        GOOGLE_CLOUD_PROJECT="p",
    )
    assert result.returncode == 0, result.stderr
    assert len(stdout_records(result.stdout)) == 2


def test_api_key_from_google_api_key_and_flag(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 1)
    via_env = run_cli(
        ["run", str(path), "-t", "{text}"], fake.url, GEMINI_API_KEY=None, GOOGLE_API_KEY="other-key"
    )
    assert via_env.returncode == 0, via_env.stderr
    via_flag = run_cli(
        ["run", str(path), "-t", "{text}", "--api-key", "flag-key"], fake.url, GEMINI_API_KEY=None
    )
    assert via_flag.returncode == 0, via_flag.stderr
    assert {"other-key", "flag-key"} <= set(fake.stats()["keys_seen"])


def test_api_key_never_appears_in_any_output(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 3, {1: " [[invalid]]", 2: " [[fail:503:9]]"})
    out = tmp_path / "out.jsonl"
    runs = [
        run_cli(
            ["run", str(path), "-t", "{text}", "-o", str(out), "--max-attempts", "2", "--debug"], fake.url
        ),
        run_cli(
            ["run", str(path), "-t", "{text}", "--max-attempts", "2", "--debug"],
            fake.url,
            GEMINI_API_KEY=TEST_KEY + "x",
        ),
        run_cli(["run", str(path), "-t", "{nope}", "--debug"], fake.url),
    ]
    for result in runs:
        assert TEST_KEY not in result.stdout and TEST_KEY not in result.stderr
    assert TEST_KEY not in out.read_text(encoding="utf-8")


def test_progress_off_still_prints_the_summary_unless_quiet(fake: FakeAPI, tmp_path: Path) -> None:
    path = questions(tmp_path, 2)
    result = run_cli(["run", str(path), "-t", "{text}", "--progress", "off"], fake.url)
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("gembulk: done: 2 ok") and len(result.stderr.splitlines()) == 1
