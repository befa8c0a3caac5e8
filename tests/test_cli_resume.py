"""Resume, SIGKILL and SIGINT: nothing lost, nothing paid twice; through the CLI against the fake."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from gembulk.fake import expected_text
from tests.cli_support import FakeAPI, read_jsonl, run_cli, start_cli, write_csv


def make_input(tmp_path: Path, n: int, marker: dict[int, str] | None = None) -> Path:
    marker = marker or {}
    rows = [{"id": f"r{i:03d}", "text": f"row {i}{marker.get(i, '')}"} for i in range(1, n + 1)]
    return write_csv(tmp_path / "in.csv", rows)


def assert_complete(out: Path, n: int) -> list[dict]:
    records = read_jsonl(out)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)), "duplicate records"
    assert sorted(ids) == [f"r{i:03d}" for i in range(1, n + 1)]
    for record in records:
        assert record["error"] is None
        assert record["response"] == expected_text(record["text"])
    return records


def wait_for_records(out: Path, at_least: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.read_text(encoding="utf-8").count("\n") >= at_least:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {at_least} records after {timeout}s")


def test_rerun_of_a_finished_job_sends_nothing(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 5)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out)]
    assert run_cli(args, fake.url).returncode == 0
    before = out.read_bytes()
    again = run_cli(args, fake.url)
    assert again.returncode == 0, again.stderr
    assert "5 already done" in again.stderr
    assert out.read_bytes() == before
    assert fake.stats()["generate_requests"] == 5


def test_rerun_retries_only_failed_rows_and_leaves_one_record_per_id(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 6, {2: " [[fail:503:1]]", 5: " [[fail:500:1]]"})
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out)]
    first = run_cli([*args, "--max-attempts", "1"], fake.url)
    assert first.returncode == 1
    assert sum(r["error"] is not None for r in read_jsonl(out)) == 2
    second = run_cli(args, fake.url)
    assert second.returncode == 0, second.stderr
    assert_complete(out, 6)
    by_prompt = fake.stats()["by_prompt"]
    assert by_prompt["row 1"] == 1 and by_prompt["row 2 [[fail:503:1]]"] == 2


def test_torn_last_line_is_dropped_and_completed(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out)]
    assert run_cli(args, fake.url).returncode == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2], encoding="utf-8")  # a crash mid-write
    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert "torn" in result.stderr
    assert_complete(out, 4)


@pytest.mark.timing
def test_sigkill_mid_run_then_rerun_loses_nothing_and_pays_nothing_twice(
    fake: FakeAPI, tmp_path: Path
) -> None:
    fake.configure(latency=0.15)
    n = 60
    path = make_input(tmp_path, n)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "-c", "4"]
    process = start_cli(args, fake.url)
    wait_for_records(out, 12)
    process.kill()
    process.wait(timeout=10)
    finished = {r["id"]: r for r in read_jsonl_tolerant(out)}
    assert 12 <= len(finished) < n
    before = fake.stats()["by_prompt"]

    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert_complete(out, n)
    after = fake.stats()["by_prompt"]
    for record in finished.values():  # no finished row was requested again
        assert after[record["text"]] == before[record["text"]] == 1


def read_jsonl_tolerant(out: Path) -> list[dict]:
    import json

    records = []
    for line in out.read_text(encoding="utf-8").splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))
    return records


@pytest.mark.timing
def test_sigint_stops_gracefully_with_exit_130_and_resume_hint(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.3)
    n = 40
    path = make_input(tmp_path, n)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "-c", "3"]
    process = start_cli(args, fake.url)
    wait_for_records(out, 3)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "run the same command again" in stderr
    assert "Traceback" not in stderr
    partial = read_jsonl(out)  # every line complete: the in-flight rows were allowed to finish
    assert 3 <= len(partial) < n
    assert all(r["error"] is None for r in partial)
    requested = fake.stats()["generate_requests"]
    assert requested <= len(partial) + 3  # nothing new dispatched after the signal

    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert_complete(out, n)


@pytest.mark.timing
def test_sigterm_behaves_like_sigint(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.3)
    path = make_input(tmp_path, 30)
    out = tmp_path / "out.jsonl"
    process = start_cli(["run", str(path), "-t", "{text}", "-o", str(out), "-c", "2"], fake.url)
    wait_for_records(out, 2)
    process.terminate()
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert all(r["error"] is None for r in read_jsonl(out))
