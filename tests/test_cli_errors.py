"""Bad input through the CLI: one readable line, exit 2, nothing sent, existing output untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_support import FakeAPI, run_cli, write_csv


@pytest.fixture
def good_csv(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "in.csv", [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}])


@pytest.fixture
def existing_output(tmp_path: Path) -> Path:
    out = tmp_path / "precious.jsonl"
    out.write_text('{"id": "z", "response": "keep me", "error": null}\n', encoding="utf-8")
    return out


def bad_inputs(tmp_path: Path, good_csv: Path) -> dict[str, tuple[list[str], str]]:
    broken_jsonl = tmp_path / "broken.jsonl"
    broken_jsonl.write_text('{"prompt": "ok"}\n{"prompt": oops}\n', encoding="utf-8")
    missing_field = tmp_path / "missing.jsonl"
    missing_field.write_text('{"prompt": "ok"}\n{"prompt": 1}\n', encoding="utf-8")
    dup = write_csv(tmp_path / "dup.csv", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    unterminated = tmp_path / "quote.csv"
    unterminated.write_text('id,text\na,"never closed\nb,y\n', encoding="utf-8")
    weird = tmp_path / "data.xlsx"
    weird.write_text("x", encoding="utf-8")
    bad_schema = tmp_path / "schema.json"
    bad_schema.write_text("{not json", encoding="utf-8")
    g = str(good_csv)
    return {
        "missing file": (["run", str(tmp_path / "nope.csv"), "-t", "{text}"], "nope.csv"),
        "unknown format": (["run", str(weird), "-t", "{text}"], "data.xlsx"),
        "unknown column": (["run", g, "-t", "{txet}"], "text"),  # suggests the close match
        "attribute access": (["run", g, "-t", "{text.upper}"], "{text.upper}"),
        "unbalanced brace": (["run", g, "-t", "{text"], "template"),
        "no prompt column": (["run", g], "--template"),
        "bad json line": (["run", str(broken_jsonl)], "broken.jsonl:2"),
        "no row has field": (["run", str(missing_field), "-t", "{other}"], "'other'"),
        "duplicate id": (["run", str(dup), "-t", "{text}"], "duplicate id"),
        "unterminated quote": (["run", str(unterminated), "-t", "{text}"], "quote.csv:2"),
        "bad schema": (["run", g, "-t", "{text}", "--json-schema", str(bad_schema)], "schema.json"),
        "zero concurrency": (["run", g, "-t", "{text}", "-c", "0"], "--concurrency"),
        "unknown option": (["run", g, "--frobnicate"], "frobnicate"),
        "bad progress mode": (["run", g, "-t", "{text}", "--progress", "loud"], "progress"),
        "template and file": (["run", g, "-t", "{text}", "--template-file", g], "template"),
    }


CASES = [
    "missing file",
    "unknown format",
    "unknown column",
    "attribute access",
    "unbalanced brace",
    "no prompt column",
    "bad json line",
    "no row has field",
    "duplicate id",
    "unterminated quote",
    "bad schema",
    "zero concurrency",
    "unknown option",
    "bad progress mode",
    "template and file",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_sends_nothing_and_keeps_output(
    fake: FakeAPI, tmp_path: Path, good_csv: Path, existing_output: Path, case: str
) -> None:
    args, needle = bad_inputs(tmp_path, good_csv)[case]
    before = existing_output.read_bytes()
    result = run_cli([*args, "-o", str(existing_output)], fake.url)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    assert existing_output.read_bytes() == before
    assert fake.stats()["generate_requests"] == 0


def test_errors_are_one_line_unless_debug(fake: FakeAPI, tmp_path: Path, good_csv: Path) -> None:
    result = run_cli(["run", good_csv.as_posix(), "-t", "{nope}"], fake.url)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("gembulk: error:") and len(lines) <= 2
    debug = run_cli(["run", good_csv.as_posix(), "-t", "{nope}", "--debug"], fake.url)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_no_api_key_is_a_usage_error(fake: FakeAPI, good_csv: Path) -> None:
    result = run_cli(["run", str(good_csv), "-t", "{text}"], fake.url, GEMINI_API_KEY=None)
    assert result.returncode == 2
    assert "GEMINI_API_KEY" in result.stderr
    assert fake.stats()["generate_requests"] == 0


def test_output_equal_to_input_is_refused(fake: FakeAPI, good_csv: Path) -> None:
    before = good_csv.read_bytes()
    result = run_cli(["run", str(good_csv), "-t", "{text}", "-o", str(good_csv)], fake.url)
    assert result.returncode == 2 and "input file" in result.stderr
    assert good_csv.read_bytes() == before


def test_output_that_is_not_a_gembulk_file_is_refused(fake: FakeAPI, tmp_path: Path, good_csv: Path) -> None:
    out = tmp_path / "notes.jsonl"
    out.write_text("dear diary\nnot json at all\n", encoding="utf-8")
    result = run_cli(["run", str(good_csv), "-t", "{text}", "-o", str(out)], fake.url)
    assert result.returncode == 2, result.stderr
    assert out.read_text(encoding="utf-8") == "dear diary\nnot json at all\n"


def test_help_documents_exit_codes() -> None:
    import subprocess

    from tests.cli_support import gembulk_command

    text = subprocess.run(
        [*gembulk_command(), "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for fragment in ("0 every row succeeded", "130 interrupted", "3 stopped early"):
        assert fragment in " ".join(text.split())


def test_version() -> None:
    import subprocess

    from tests.cli_support import gembulk_command

    out = subprocess.run([*gembulk_command(), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("gembulk ")


def test_records_are_valid_json_even_with_unicode_and_newlines(fake: FakeAPI, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "u.csv", [{"id": "ü1", "text": "naïve\nline two — “quoted”"}])
    result = run_cli(["run", str(path), "-t", "{text}"], fake.url)
    assert result.returncode == 0, result.stderr
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["id"] == "ü1" and "line two" in record["response"]
