"""`gembulk run --batch` and `gembulk batch …` end to end: the installed CLI against the fake API process."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gembulk.fake import expected_text
from tests.cli_support import (
    TEST_KEY,
    FakeAPI,
    by_id,
    cli_env,
    gembulk_command,
    read_jsonl,
    run_cli,
    start_cli,
    write_csv,
)

POLL = ["--poll-interval", "0.05", "--poll-max-interval", "0.1"]
MARKERS = {3: " [[invalid]]", 5: " [[block]]", 7: " [[safety]]", 9: " [[max_tokens]]"}


def make_input(tmp_path: Path, n: int, markers: dict[int, str] | None = None, name: str = "in.csv") -> Path:
    markers = markers or {}
    rows = [{"id": f"r{i:03d}", "text": f"row {i}{markers.get(i, '')}"} for i in range(1, n + 1)]
    return write_csv(tmp_path / name, rows)


def state_of(out: Path) -> dict[str, Any]:
    return json.loads(Path(f"{out}.gembulk-batch.json").read_text())


def remote_exists(fake: FakeAPI, name: str) -> bool:
    request = urllib.request.Request(f"{fake.url}/v1beta/{name}", headers={"x-goog-api-key": TEST_KEY})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return True
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 404):  # a missing file is 403 PERMISSION_DENIED on the real API
            return False
        raise


def remote_files(fake: FakeAPI, out: Path) -> list[str]:
    """The uploaded inputs and the result files of OUT's batch jobs."""
    state = state_of(out)
    inputs = [job["input_file"] for job in state["jobs"]]
    results = [f"files/batch-{job['name'].removeprefix('batches/')}" for job in state["jobs"]]
    return inputs + results


def assert_answers(records: list[dict[str, Any]], n: int, mode: str | None = "batch") -> None:
    assert sorted(r["id"] for r in records) == [f"r{i:03d}" for i in range(1, n + 1)]
    for record in records:
        assert record["error"] is None, record
        assert record["response"] == expected_text(record["text"])
        assert record.get("mode") == mode


def fetch_until_done(args: list[str], fake: FakeAPI, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    """What cron does: run `batch fetch` until it exits with something other than 4."""
    deadline = time.monotonic() + timeout
    while True:
        result = run_cli(args, fake.url)
        if result.returncode != 4 or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def test_batch_gives_the_same_ids_and_answers_as_online(fake: FakeAPI, tmp_path: Path) -> None:
    n = 12
    path = make_input(tmp_path, n, MARKERS)
    online_out, batch_out = tmp_path / "online.jsonl", tmp_path / "batch.jsonl"
    online = run_cli(["run", str(path), "-t", "{text}", "-o", str(online_out)], fake.url)
    assert online.returncode == 1, online.stderr
    fake.reset()
    batch = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(batch_out), "--batch", "--batch-max-rows", "5", *POLL],
        fake.url,
    )
    assert batch.returncode == 1, batch.stderr
    stats = fake.stats()
    assert (stats["batches_created"], stats["files_uploaded"], stats["generate_requests"]) == (3, 3, 0)

    online_records, batch_records = by_id(read_jsonl(online_out)), by_id(read_jsonl(batch_out))
    assert len(batch_records) == len(read_jsonl(batch_out)) == n  # one record per row
    assert set(online_records) == set(batch_records)
    for row_id, expected in online_records.items():
        got = batch_records[row_id]
        assert got.pop("mode") == "batch"
        assert got == expected  # answers, error status and code, finish reason, usage, input fields
    statuses = {r["id"]: r["error"]["status"] for r in batch_records.values() if r["error"]}
    assert statuses == {
        "r003": "INVALID_ARGUMENT",
        "r005": "BLOCKED_PROHIBITED_CONTENT",
        "r007": "SAFETY",
        "r009": "MAX_TOKENS",
    }
    assert batch_records["r003"]["error"]["code"] == 400  # gRPC 3 on the result line

    state = state_of(batch_out)
    assert state["fetched"] and state["files_deleted"]
    assert [(job["first_index"], job["last_index"]) for job in state["jobs"]] == [(1, 5), (6, 10), (11, 12)]
    assert not any(remote_exists(fake, name) for name in remote_files(fake, batch_out))
    assert "3 batch input file(s)" in batch.stderr and "SUCCEEDED" in batch.stderr


def test_keep_files_status_list_and_a_second_fetch(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--keep-files", *POLL], fake.url
    )
    assert result.returncode == 0, result.stderr
    assert_answers(read_jsonl(out), 4)
    assert all(remote_exists(fake, name) for name in remote_files(fake, out))

    status = run_cli(["batch", "status", str(out), "--json"], fake.url)
    assert status.returncode == 0, status.stderr
    body = json.loads(status.stdout)
    (job,) = body["jobs"]
    assert body["done"] and body["fetched"] and body["output"] == str(out)
    assert (job["state"], job["rows"], job["requests"], job["succeeded"], job["failed"]) == (
        "SUCCEEDED",
        4,
        4,
        4,
        0,
    )
    text = run_cli(["batch", "status", f"{out}.gembulk-batch.json"], fake.url)
    assert f"{job['name']}: SUCCEEDED" in text.stdout and "fetched" in text.stdout

    listed = run_cli(["batch", "list", "--json", "--limit", "5"], fake.url)
    assert listed.returncode == 0, listed.stderr
    assert job["name"] in [j["name"] for j in json.loads(listed.stdout)]
    plain = run_cli(["batch", "list", "--limit", "5"], fake.url)
    assert any(line.startswith(f"{job['name']}  SUCCEEDED") for line in plain.stdout.splitlines())

    before = out.read_bytes()
    again = run_cli(["batch", "fetch", str(out)], fake.url)
    assert again.returncode == 0, again.stderr
    assert "already fetched" in again.stderr
    assert out.read_bytes() == before


def test_expired_job_is_reported_per_row(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--batch-name", "t [[batch:expire]]"]
    result = run_cli([*args, *POLL], fake.url)
    assert result.returncode == 1, result.stderr
    records = read_jsonl(out)
    assert len(records) == 3
    for record in records:
        assert record["response"] is None and record["mode"] == "batch"
        assert record["error"]["status"] == "BATCH_EXPIRED"
        assert "ended EXPIRED" in record["error"]["message"]
    assert "BATCH_EXPIRED 3" in result.stderr


def test_failed_job_and_transient_error_lines_are_finished_online(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 5, {2: " [[fail:503:1]]", 4: " [[invalid]]"})
    out = tmp_path / "out.jsonl"
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--fallback", "online", *POLL], fake.url
    )
    assert result.returncode == 1, result.stderr
    records = by_id(read_jsonl(out))
    assert len(records) == 5
    assert records["r002"]["mode"] == "online" and records["r002"]["response"] == expected_text(
        "row 2 [[fail:503:1]]"
    )
    assert records["r004"]["mode"] == "batch" and records["r004"]["error"]["status"] == "INVALID_ARGUMENT"
    assert all(
        records[i]["mode"] == "batch" and records[i]["error"] is None for i in ("r001", "r003", "r005")
    )
    by_prompt = fake.stats()["by_prompt"]
    assert by_prompt == {"row 2 [[fail:503:1]]": 2}  # only the transient row went online (and was retried)

    failed_out = tmp_path / "failed.jsonl"
    plain = make_input(tmp_path, 3, name="plain.csv")
    args = [
        "run",
        str(plain),
        "-t",
        "{text}",
        "-o",
        str(failed_out),
        "--batch",
        "--batch-name",
        "[[batch:fail]]",
    ]
    result = run_cli([*args, "--fallback", "online", *POLL], fake.url)
    assert result.returncode == 0, result.stderr
    assert "FAILED" in result.stderr and "finishing 3 rows online" in result.stderr
    assert_answers(read_jsonl(failed_out), 3, mode="online")


@pytest.mark.timing
def test_detach_then_fetch_too_early_then_fetch_and_fetch_again(fake: FakeAPI, tmp_path: Path) -> None:
    # Running long enough that the early fetch and the 0.2 s wait, a few CLI starts after the submit,
    # still find it running on a loaded machine (at 3 s a machine busy with other runs saw it done).
    fake.configure(batch_pending=0.2, batch_running=5.0)
    path = make_input(tmp_path, 6)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"label": {"type": "string"}}}))
    out = tmp_path / "out.jsonl"
    submit = [
        "run",
        str(path),
        "-t",
        "{text}",
        "-o",
        str(out),
        "--batch",
        "--detach",
        "--json-schema",
        str(schema),
    ]
    detached = run_cli(submit, fake.url)
    assert detached.returncode == 0, detached.stderr
    (job,) = detached.stdout.split()
    assert job.startswith("batches/") and state_of(out)["jobs"][0]["name"] == job
    assert not out.exists()
    assert "gembulk batch fetch" in detached.stderr

    state_file = f"{out}.gembulk-batch.json"
    early = run_cli(["batch", "fetch", state_file], fake.url)
    assert early.returncode == 4, early.stderr
    assert "not done yet" in early.stderr and "error" not in early.stderr
    assert not out.exists()
    timed_out = run_cli(["batch", "wait", state_file, "--timeout", "0.2", *POLL], fake.url)
    assert timed_out.returncode == 4 and "timed out" in timed_out.stderr
    again = run_cli(submit, fake.url)  # cron ran the submit twice: the same job, nothing new
    assert again.returncode == 0 and again.stdout.split() == [job]
    assert fake.stats()["batches_created"] == 1

    done = fetch_until_done(["batch", "fetch", state_file, "-o", str(out)], fake)
    assert done.returncode == 0, done.stderr
    records = read_jsonl(out)
    assert sorted(r["id"] for r in records) == [f"r{i:03d}" for i in range(1, 7)]
    assert all(r["parsed"] == {"label": f"label: {r['text']}"} for r in records)
    assert all(r["mode"] == "batch" for r in records)
    before = out.read_bytes()
    second = run_cli(["batch", "fetch", job, "-o", str(out)], fake.url)  # by job name, via OUT's state file
    assert second.returncode == 0, second.stderr
    assert out.read_bytes() == before


@pytest.mark.timing
def test_sigkill_during_wait_then_wait_again(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(batch_pending=0.1, batch_running=2.0)
    path = make_input(tmp_path, 5)
    out = tmp_path / "out.jsonl"
    detached = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--detach"], fake.url)
    assert detached.returncode == 0, detached.stderr
    state_file = f"{out}.gembulk-batch.json"
    waiting = subprocess.Popen(
        [*gembulk_command(), "batch", "wait", state_file, *POLL],
        env=cli_env(fake.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    assert waiting.poll() is None
    waiting.kill()
    waiting.wait(timeout=10)
    assert not state_of(out)["fetched"]

    result = run_cli(["batch", "wait", state_file, *POLL], fake.url)
    assert result.returncode == 0, result.stderr
    assert_answers(read_jsonl(out), 5)
    assert fake.stats()["batches_created"] == 1


def test_cancelled_job_is_reported_per_row(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(batch_running=30.0)
    path = make_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    detached = run_cli(["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--detach"], fake.url)
    assert detached.returncode == 0, detached.stderr
    cancelled = run_cli(["batch", "cancel", str(out)], fake.url)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "now CANCELLED" in cancelled.stdout
    again = run_cli(["batch", "cancel", str(out)], fake.url)
    assert again.returncode == 0 and "already CANCELLED" in again.stdout
    result = run_cli(["batch", "fetch", str(out)], fake.url)
    assert result.returncode == 1, result.stderr
    assert {r["error"]["status"] for r in read_jsonl(out)} == {"BATCH_CANCELLED"}
    assert len(read_jsonl(out)) == 3


@pytest.mark.timing
def test_sigint_while_polling_keeps_the_jobs_and_the_rerun_adopts_them(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(batch_pending=0.1, batch_running=1.5)
    path = make_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", *POLL]
    process = start_cli(args, fake.url)
    state = Path(f"{out}.gembulk-batch.json")
    deadline = time.monotonic() + 15
    while not (state.exists() and state_of(out)["jobs"] and state_of(out)["jobs"][0]["name"]):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "keep running" in stderr and "gembulk batch fetch" in stderr
    assert "Traceback" not in stderr

    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert "adopting" in result.stderr
    assert_answers(read_jsonl(out), 4)
    assert fake.stats()["batches_created"] == 1


def test_stdin_input_is_kept_for_fetch_and_removed_after(fake: FakeAPI, tmp_path: Path) -> None:
    lines = "".join(json.dumps({"id": f"r{i:03d}", "text": f"row {i}"}) + "\n" for i in range(1, 5))
    out = tmp_path / "out.jsonl"
    detached = run_cli(
        ["run", "-", "-t", "{text}", "-o", str(out), "--batch", "--detach"], fake.url, stdin=lines
    )
    assert detached.returncode == 0, detached.stderr
    copy = Path(f"{out}.gembulk-batch.input")
    assert copy.read_text() == lines
    result = fetch_until_done(["batch", "fetch", str(out)], fake)
    assert result.returncode == 0, result.stderr
    assert_answers(read_jsonl(out), 4)
    assert not copy.exists()
    assert not list(tmp_path.glob("gembulk-stdin-*"))


def test_upload_create_and_polls_are_retried_and_fatal_errors_exit_3(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    fake.configure(api_error_rate=0.4)
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--max-attempts", "12", *POLL], fake.url
    )
    assert result.returncode == 0, result.stderr
    assert fake.stats()["api_faults"] > 0
    assert_answers(read_jsonl(out), 3)
    fake.configure(api_error_rate=0.0)

    fake.reset()
    unknown = tmp_path / "unknown.jsonl"
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(unknown), "--batch", "-m", "gemini-nope"], fake.url
    )
    assert result.returncode == 3, result.stderr
    assert "404 NOT_FOUND" in result.stderr and "check the model name" in result.stderr
    # models.get refused the model before anything was built or uploaded
    assert fake.stats()["files_uploaded"] == 0 and fake.stats()["models_get_requests"] == 1
    assert not unknown.exists() and not Path(f"{unknown}.gembulk-batch.json").exists()

    # A model that models.get knows but the Batch API refuses (an embedding model): the job creation's
    # 404 comes after the upload, which is deleted, leaving nothing to adopt.
    fake.reset()
    refused = tmp_path / "refused.jsonl"
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(refused), "--batch", "-m", "gemini-embedding-001"],
        fake.url,
    )
    assert result.returncode == 3, result.stderr
    assert "404 NOT_FOUND" in result.stderr and "check the model name" in result.stderr
    assert fake.stats()["files_uploaded"] == 1 and fake.stats()["batches_created"] == 0
    assert not Path(f"{refused}.gembulk-batch.json").exists()  # the upload was deleted, nothing to adopt

    bad_key = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(tmp_path / "k.jsonl"), "--batch"],
        fake.url,
        GEMINI_API_KEY="bad-key",
    )
    assert bad_key.returncode == 3, bad_key.stderr
    assert "API key" in bad_key.stderr


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([{"id": "a", "text": "x"}], ["-t", "{txt}"], "did you mean {text}"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], ["-t", "{text}"], "duplicate id"),
        ([{"id": "a", "text": "x"}], ["-t", "{text}", "-o", "-", "--detach"], "--detach needs -o FILE"),
        (
            [{"id": "a", "text": "x"}],
            ["-t", "{text}", "--batch-max-bytes", "10"],
            "more than --batch-max-bytes",
        ),
    ],
)
def test_bad_input_is_refused_before_anything_is_uploaded(
    fake: FakeAPI, tmp_path: Path, rows: list[dict[str, str]], extra: list[str], message: str
) -> None:
    path = write_csv(tmp_path / "in.csv", rows)
    result = run_cli(["run", str(path), "-o", str(tmp_path / "out.jsonl"), "--batch", *extra], fake.url)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    stats = fake.stats()
    assert (stats["files_uploaded"], stats["batches_created"]) == (0, 0)
    assert not list(tmp_path.glob("*.gembulk-batch.json"))


def test_missing_corrupt_and_foreign_state_files_exit_2(fake: FakeAPI, tmp_path: Path) -> None:
    missing = run_cli(["batch", "fetch", str(tmp_path / "nope.gembulk-batch.json")], fake.url)
    assert missing.returncode == 2 and "no such batch state file" in missing.stderr
    corrupt = tmp_path / "c.jsonl.gembulk-batch.json"
    corrupt.write_text('{"kind": "gembulk-batch-state", "version": 1, "jobs": [')
    result = run_cli(["batch", "wait", str(corrupt)], fake.url)
    assert result.returncode == 2 and "corrupt batch state file" in result.stderr
    assert run_cli(["batch", "status", str(corrupt)], fake.url).returncode == 2
    not_ours = tmp_path / "other.json"
    not_ours.write_text('{"version": 1, "job": {}}')
    result = run_cli(["batch", "fetch", str(not_ours), "-o", str(tmp_path / "x.jsonl")], fake.url)
    assert result.returncode == 2 and "not a gembulk batch state file" in result.stderr

    fake.configure(batch_running=30.0)
    path = make_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    assert (
        run_cli(
            ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--detach"], fake.url
        ).returncode
        == 0
    )
    other_template = run_cli(["run", str(path), "-t", "Q: {text}", "-o", str(out), "--batch"], fake.url)
    assert other_template.returncode == 2, other_template.stderr
    assert "another job" in other_template.stderr and "template" in other_template.stderr
    make_input(tmp_path, 4)  # the input changes under the submitted jobs
    changed = run_cli(["batch", "fetch", str(out)], fake.url)
    assert changed.returncode == 2, changed.stderr
    assert "input content" in changed.stderr
    unknown_job = run_cli(["batch", "fetch", "batches/nosuchjob", "-o", str(out)], fake.url)
    assert unknown_job.returncode == 2 and "does not list batches/nosuchjob" in unknown_job.stderr
    assert not out.exists()


def test_api_key_never_reaches_the_state_file_or_any_output(fake: FakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    path = make_input(tmp_path, 3)
    submit = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--detach", *POLL], fake.url
    )
    assert submit.returncode == 0, submit.stderr
    state_file = Path(str(out) + ".gembulk-batch.json")
    fetched = fetch_until_done(["batch", "fetch", str(state_file), "-o", str(out)], fake)
    status = run_cli(["batch", "status", str(state_file), "--json"], fake.url)
    for text in (submit.stdout, submit.stderr, fetched.stdout, fetched.stderr, status.stdout, status.stderr):
        assert TEST_KEY not in text
    for written in tmp_path.iterdir():
        assert TEST_KEY not in written.read_text(encoding="utf-8", errors="replace"), written.name
