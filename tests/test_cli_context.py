"""--context end to end: one cache per model, referenced by every request, gone after the run (and after
SIGINT), recreated once when deleted mid-run, reused after SIGKILL; short contexts inline and first; batch,
fan-out, the response cache, --dry-run; through the CLI against the fake over real HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gembulk.pricing import load_prices
from gembulk.records import Usage
from tests.cli_support import TEST_KEY, FakeAPI, read_jsonl, run_cli, start_cli, write_csv

FILLER = "Clause: every ticket is read in full before it is classified. "  # 62 characters


def policy(tmp_path: Path, tokens: int = 30_000) -> Path:
    """A document of about `tokens` tokens for the fake (4 characters a token), unique to the test, so no
    test finds a cache another one left."""
    text = f"Policy {uuid.uuid4()}.\n" + FILLER * (tokens * 4 // len(FILLER))
    path = tmp_path / "policy.md"
    path.write_text(text, encoding="utf-8")
    return path


def tickets(tmp_path: Path, n: int) -> Path:
    return write_csv(tmp_path / "in.csv", [{"id": f"t{i}", "text": f"ticket {i}"} for i in range(1, n + 1)])


def caches(fake: FakeAPI) -> dict[str, dict[str, Any]]:
    """The fake's live cachedContents entries, by name (through the public API, as any client sees them)."""
    request = urllib.request.Request(f"{fake.url}/v1beta/cachedContents?pageSize=1000&key={TEST_KEY}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return {c["name"]: c for c in json.loads(response.read())["cachedContents"]}


def delete_cache(fake: FakeAPI, name: str) -> None:
    request = urllib.request.Request(f"{fake.url}/v1beta/{name}?key={TEST_KEY}", method="DELETE")
    urllib.request.urlopen(request, timeout=10).close()


def summary(stderr: str) -> dict[str, Any]:
    """The summary event of --progress json."""
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    return next(e for e in events if e["event"] == "summary")


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def record_cost(usage: dict[str, int], model: str = "gemini-2.5-flash") -> float:
    cost = load_prices().cost(model, Usage(**usage))
    assert cost is not None
    return cost


def test_a_long_context_is_cached_once_referenced_by_every_request_and_costs_a_tenth(
    fake: FakeAPI, tmp_path: Path
) -> None:
    data, document = tickets(tmp_path, 200), policy(tmp_path)
    before = set(caches(fake))
    common = [
        "run",
        str(data),
        "-t",
        "Classify: {text}",
        "--context",
        str(document),
        "-s",
        "Answer in a word.",
    ]
    common += ["--max-output-tokens", "8", "--progress", "json"]
    cached = run_cli([*common, "-o", str(tmp_path / "cached.jsonl")], fake.url)
    assert cached.returncode == 0, cached.stderr
    stats = fake.stats()
    assert (stats["caches_created"], stats["caches_deleted"], stats["cached_requests"]) == (1, 1, 200)
    assert set(caches(fake)) == before  # gone after the run
    assert stats["count_tokens_requests"] >= 1 and stats["generate_requests"] == 200
    assert all(prompt.startswith("Classify: ticket") for prompt in stats["by_prompt"])  # not inline
    records = read_jsonl(tmp_path / "cached.jsonl")
    shared = records[0]["usage"]["cached_tokens"]
    assert 29_000 < shared < 31_000
    assert all(r["error"] is None and r["usage"]["cached_tokens"] == shared for r in records)
    assert "cached as cachedContents/" in cached.stderr and "it pays for 200 requests" in cached.stderr

    fake.reset()
    inline = run_cli([*common, "--context-cache", "off", "-o", str(tmp_path / "inline.jsonl")], fake.url)
    assert inline.returncode == 0, inline.stderr
    assert fake.stats()["caches_created"] == 0
    inline_records = read_jsonl(tmp_path / "inline.jsonl")
    assert all(r["usage"]["cached_tokens"] == 0 for r in inline_records)
    # The summaries price every record at the table's rates (cached tokens at the cached rate) plus
    # the cache's storage for the seconds it lived; the ratio is about 0.03 / 0.30 on the shared part.
    cached_cost, inline_cost = summary(cached.stderr)["cost_usd"], summary(inline.stderr)["cost_usd"]
    assert cached_cost == pytest.approx(sum(record_cost(r["usage"]) for r in records), rel=1e-3)
    assert inline_cost == pytest.approx(sum(record_cost(r["usage"]) for r in inline_records), rel=1e-6)
    expected = sum(record_cost(r["usage"]) for r in records) / sum(
        record_cost(r["usage"]) for r in inline_records
    )
    assert cached_cost / inline_cost == pytest.approx(expected, rel=1e-3)
    assert 0.09 < cached_cost / inline_cost < 0.12
    assert summary(cached.stderr)["cache_saved_usd"] > 0.9 * (inline_cost - cached_cost)


@dataclass(frozen=True)
class BackgroundRun:
    """A context run started in the background: the process, its arguments, its OUT, the caches before it."""

    process: subprocess.Popen[str]
    args: list[str]
    out: Path
    before: set[str]


def start_context_run(
    fake: FakeAPI, tmp_path: Path, rows: int, *, written: int, latency: float = 0.25
) -> BackgroundRun:
    """A run of `rows` tickets with a 5,000-token --context at -c 2, each answer `latency` seconds late,
    returned once `written` records are in OUT (killed if they never are)."""
    fake.configure(latency=latency)
    data, document = tickets(tmp_path, rows), policy(tmp_path, 5_000)
    out = tmp_path / "out.jsonl"
    before = set(caches(fake))
    args = ["run", str(data), "-t", "{text}", "--context", str(document), "-o", str(out), "-c", "2"]
    process = start_cli(args, fake.url)
    try:
        wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= written)
    except BaseException:
        process.kill()
        process.communicate(timeout=10)
        raise
    return BackgroundRun(process, args, out, before)


@pytest.mark.timing
def test_sigint_deletes_the_cache(fake: FakeAPI, tmp_path: Path) -> None:
    run = start_context_run(fake, tmp_path, 40, written=2, latency=0.4)
    assert len(set(caches(fake)) - run.before) == 1
    run.process.send_signal(signal.SIGINT)
    _, stderr = run.process.communicate(timeout=30)
    assert run.process.returncode == 130, stderr
    assert set(caches(fake)) == run.before and fake.stats()["caches_deleted"] == 1


@pytest.mark.timing
def test_a_cache_deleted_mid_run_is_recreated_once_and_no_row_fails(fake: FakeAPI, tmp_path: Path) -> None:
    run = start_context_run(fake, tmp_path, 30, written=4)
    [first] = set(caches(fake)) - run.before
    delete_cache(fake, first)
    _, stderr = run.process.communicate(timeout=60)
    assert run.process.returncode == 0, stderr
    assert "disappeared (expired or deleted); recreating it once" in stderr
    records = read_jsonl(run.out)
    assert len(records) == 30 and all(r["error"] is None and r["usage"]["cached_tokens"] > 0 for r in records)
    assert fake.stats()["caches_created"] == 2 and set(caches(fake)) == run.before


@pytest.mark.timing
def test_a_cache_left_by_sigkill_is_reused_by_the_next_run_then_deleted(
    fake: FakeAPI, tmp_path: Path
) -> None:
    run = start_context_run(fake, tmp_path, 30, written=2)
    run.process.kill()
    run.process.communicate(timeout=10)
    [left] = set(caches(fake)) - run.before
    fake.configure(latency=0.0)
    result = run_cli(run.args, fake.url)
    assert result.returncode == 0, result.stderr
    assert f"reusing {left}" in result.stderr
    assert fake.stats()["caches_created"] == 1  # only the killed run's
    assert set(caches(fake)) == run.before
    assert all(r["usage"]["cached_tokens"] > 0 for r in read_jsonl(run.out))


def test_a_short_context_goes_inline_first_in_every_request(fake: FakeAPI, tmp_path: Path) -> None:
    data = tickets(tmp_path, 5)
    result = run_cli(["run", str(data), "-t", "{text}", "--context-text", "Rules: one word. "], fake.url)
    assert result.returncode == 0, result.stderr
    stats = fake.stats()
    assert stats["caches_created"] == 0 and stats["count_tokens_requests"] >= 1
    assert sorted(stats["by_prompt"]) == [f"Rules: one word. ticket {i}" for i in range(1, 6)]
    assert (
        "sent inline, first in every request" in result.stderr and "caching minimum of 1,024" in result.stderr
    )


def test_fan_out_makes_one_cache_per_model(fake: FakeAPI, tmp_path: Path) -> None:
    data, document = tickets(tmp_path, 10), policy(tmp_path, 5_000)
    before = set(caches(fake))
    models = ["-m", "gemini-2.5-flash", "-m", "gemini-2.5-flash-lite"]
    result = run_cli(["run", str(data), "-t", "{text}", "--context", str(document), *models], fake.url)
    assert result.returncode == 0, result.stderr
    stats = fake.stats()
    assert (stats["caches_created"], stats["cached_requests"]) == (2, 20)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["model"] for r in records} == {"gemini-2.5-flash", "gemini-2.5-flash-lite"}
    assert all(r["usage"]["cached_tokens"] > 0 for r in records)
    assert set(caches(fake)) == before


def test_batch_lines_name_the_cache_which_is_deleted_after_the_fetch(fake: FakeAPI, tmp_path: Path) -> None:
    data, document = tickets(tmp_path, 12), policy(tmp_path, 5_000)
    out = tmp_path / "out.jsonl"
    before = set(caches(fake))
    args = [
        "run",
        str(data),
        "-t",
        "{text}",
        "--context",
        str(document),
        "--context-cache",
        "on",
        "-o",
        str(out),
    ]
    result = run_cli([*args, "--batch", "--detach"], fake.url)
    assert result.returncode == 0, result.stderr
    state = json.loads(Path(f"{out}.gembulk-batch.json").read_text())
    name = state["context"]["caches"]["gemini-2.5-flash"]["name"]
    assert set(caches(fake)) - before == {name}  # kept for the job
    wait_for(lambda: run_cli(["batch", "fetch", str(out)], fake.url).returncode == 0)
    records = read_jsonl(out)
    assert len(records) == 12 and all(
        r["mode"] == "batch" and r["usage"]["cached_tokens"] > 0 for r in records
    )
    assert fake.stats()["cached_requests"] == 12
    assert set(caches(fake)) == before
    assert json.loads(Path(f"{out}.gembulk-batch.json").read_text())["context"]["caches_deleted"] is True


def test_batch_without_caching_sends_the_context_in_every_line(fake: FakeAPI, tmp_path: Path) -> None:
    data = tickets(tmp_path, 4)
    args = [
        "run",
        str(data),
        "-t",
        "{text}",
        "--context-text",
        "Rules: one word. ",
        "--batch",
        "--poll-interval",
        "0.1",
    ]
    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["response"] for r in records) == [
        f"echo: Rules: one word. ticket {i}" for i in range(1, 5)
    ]
    assert fake.stats()["caches_created"] == 0


def test_the_response_cache_keys_the_context_content(fake: FakeAPI, tmp_path: Path) -> None:
    data = tickets(tmp_path, 3)
    store = tmp_path / "answers.sqlite"
    args = ["run", str(data), "-t", "{text}", "--cache", str(store)]
    assert run_cli([*args, "--context-text", "A. "], fake.url).returncode == 0
    assert run_cli([*args, "--context-text", "A. "], fake.url).returncode == 0
    assert fake.stats()["generate_requests"] == 3  # the second run was answered by the cache
    assert run_cli([*args, "--context-text", "B. "], fake.url).returncode == 0
    assert fake.stats()["generate_requests"] == 6  # another context: other answers


def test_dry_run_shows_the_shared_tokens_the_choice_and_both_costs(fake: FakeAPI, tmp_path: Path) -> None:
    data, document = tickets(tmp_path, 100), policy(tmp_path)
    result = run_cli(["run", str(data), "-t", "{text}", "--context", str(document), "--dry-run"], fake.url)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stderr.splitlines() if "shared context" in line)
    assert "tokens (by countTokens)" in line and "cached (one cachedContents entry)" in line
    assert "without caching" in line and "with it (cached reads" in line
    assert fake.stats()["generate_requests"] == 0 and fake.stats()["caches_created"] == 0


def test_context_problems_stop_the_run_before_anything_is_sent(fake: FakeAPI, tmp_path: Path) -> None:
    data = tickets(tmp_path, 2)
    missing = run_cli(["run", str(data), "-t", "{text}", "--context", str(tmp_path / "nope.md")], fake.url)
    assert missing.returncode == 2 and "--context" in missing.stderr and "no such file" in missing.stderr
    (tmp_path / "blob").write_bytes(b"\x00\x01")
    unknown = run_cli(["run", str(data), "-t", "{text}", "--context", str(tmp_path / "blob")], fake.url)
    assert unknown.returncode == 2 and "cannot tell its media type" in unknown.stderr
    stdin = run_cli(["run", str(data), "-t", "{text}", "--context", "-"], fake.url)
    assert stdin.returncode == 2
    assert fake.stats()["generate_requests"] == 0 and fake.stats()["count_tokens_requests"] == 0
