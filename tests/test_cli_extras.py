"""Cost, budget, dry-run estimates, the response cache and sharding, end to end through the CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gembulk.fake import count_tokens, expected_text
from gembulk.pricing import load_prices
from gembulk.records import Usage
from tests.cli_support import FakeAPI, by_id, read_jsonl, run_cli, write_csv


def make_input(tmp_path: Path, n: int, marker: dict[int, str] | None = None) -> Path:
    marker = marker or {}
    rows = [{"id": f"r{i:03d}", "text": f"row number {i}{marker.get(i, '')}"} for i in range(1, n + 1)]
    return write_csv(tmp_path / "in.csv", rows)


def records_cost(records: list[dict], *, batch: bool = False) -> float:
    prices = load_prices()
    return sum(
        prices.cost(r["model"], Usage(**r["usage"]), batch=batch) or 0.0 for r in records if r["usage"]
    )


def test_summary_shows_the_cost_of_the_answers(fake: FakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(make_input(tmp_path, 4)), "-t", "{text}", "-o", str(out)], fake.url)
    assert result.returncode == 0, result.stderr
    shown = float(re.search(r"\$(\d+\.\d+)", result.stderr).group(1))
    assert shown == round(records_cost(read_jsonl(out)), 4) > 0


def test_max_cost_stops_dispatching_keeps_rows_and_resumes(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.05)
    path = make_input(tmp_path, 40)
    out = tmp_path / "out.jsonl"
    # each answer costs about $0.00003 at gemini-2.5-flash prices (thinking included): $0.0004 fits a dozen
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "-c", "4", "--max-output-tokens", "20"]
    result = run_cli([*args, "--max-cost", "0.0004"], fake.url)
    assert result.returncode == 3, result.stderr
    assert "--max-cost" in result.stderr and "higher --max-cost" in result.stderr
    kept = read_jsonl(out)
    assert 0 < len(kept) < 40 and all(r["error"] is None for r in kept)
    assert records_cost(kept) <= 0.0004
    assert fake.stats()["generate_requests"] == len(kept)  # nothing sent beyond the kept rows

    finish = run_cli([*args, "--max-cost", "1"], fake.url)
    assert finish.returncode == 0, finish.stderr
    assert len(read_jsonl(out)) == 40


def test_max_cost_needs_a_known_price(fake: FakeAPI, tmp_path: Path) -> None:
    result = run_cli(
        ["run", str(make_input(tmp_path, 2)), "-t", "{text}", "-m", "gemini-3-flash", "--max-cost", "1"],
        fake.url,
    )
    assert result.returncode == 2 and "no price" in result.stderr and "--prices" in result.stderr
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"gemini-3-flash": {"input": 0.5, "output": 3.0}}}))
    ok = run_cli(
        [
            "run",
            str(make_input(tmp_path, 2)),
            "-t",
            "{text}",
            "-m",
            "gemini-3-flash",
            "--max-cost",
            "1",
            "--prices",
            str(prices),
        ],
        fake.url,
    )
    assert ok.returncode == 0, ok.stderr


def test_dry_run_counts_tokens_exactly_for_small_inputs_and_prices_them(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 5)
    result = run_cli(
        ["run", str(path), "-t", "Q: {text}", "--dry-run", "--max-output-tokens", "100"], fake.url
    )
    assert result.returncode == 0, result.stderr
    expected = sum(count_tokens(f"Q: row number {i}") for i in range(1, 6))
    assert f"input: {expected:,} tokens (exact, by countTokens)" in result.stderr
    input_cost = expected * 0.30 / 1e6
    assert f"input cost ${input_cost:.4f} online" in result.stderr
    assert f"up to ${input_cost + 500 * 2.5 / 1e6:.4f} in all online" in result.stderr
    stats = fake.stats()
    assert stats["generate_requests"] == 0 and stats["count_tokens_requests"] == 5


def test_dry_run_extrapolates_from_a_sample(fake: FakeAPI, tmp_path: Path) -> None:
    result = run_cli(["run", str(make_input(tmp_path, 60)), "-t", "{text}", "--dry-run"], fake.url)
    assert result.returncode == 0, result.stderr
    assert "countTokens on 20 prompts, extrapolated" in result.stderr
    figure = int(re.search(r"input: ([\d,]+) tokens", result.stderr).group(1).replace(",", ""))
    exact = sum(count_tokens(f"row number {i}") for i in range(1, 61))
    assert abs(figure - exact) <= 0.15 * exact
    assert fake.stats()["count_tokens_requests"] == 20


def test_cache_serves_repeats_without_calls_and_never_caches_errors(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 6, {3: " [[invalid]]"})
    cache = tmp_path / "cache.sqlite"
    first = run_cli(["run", str(path), "-t", "{text}", "--cache", str(cache)], fake.url)
    assert first.returncode == 1
    assert fake.stats()["generate_requests"] == 6
    second = run_cli(["run", str(path), "-t", "{text}", "--cache", str(cache)], fake.url)
    assert second.returncode == 1
    records = by_id([json.loads(line) for line in second.stdout.splitlines()])
    assert records["r001"]["cached"] is True and records["r001"]["response"] == expected_text("row number 1")
    assert "cached" not in records["r003"]  # the error went to the API again
    assert fake.stats()["generate_requests"] == 7
    assert "5 from cache" in second.stderr
    # another model or template is another request: no hit
    other = run_cli(["run", str(path), "-t", "Other {text}", "--cache", str(cache)], fake.url)
    assert all("cached" not in json.loads(line) for line in other.stdout.splitlines())


def test_cache_is_shared_by_online_and_batch_runs(fake: FakeAPI, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    online_input = write_csv(tmp_path / "a.csv", [{"id": f"a{i}", "text": f"shared {i}"} for i in range(4)])
    batch_input = write_csv(tmp_path / "b.csv", [{"id": f"b{i}", "text": f"shared {i}"} for i in range(6)])
    assert (
        run_cli(["run", str(online_input), "-t", "{text}", "--cache", str(cache)], fake.url).returncode == 0
    )
    out = tmp_path / "b.jsonl"
    batch = run_cli(
        [
            "run",
            str(batch_input),
            "-t",
            "{text}",
            "--cache",
            str(cache),
            "--batch",
            "-o",
            str(out),
            "--poll-interval",
            "0.1",
        ],
        fake.url,
    )
    assert batch.returncode == 0, batch.stderr
    records = by_id(read_jsonl(out))
    assert sum(bool(r.get("cached")) for r in records.values()) == 4
    assert records["b5"]["mode"] == "batch" and records["b5"]["response"] == expected_text("shared 5")
    # the batch's answers went into the cache too: an online run of them calls nothing
    before = fake.stats()["generate_requests"]
    again = run_cli(["run", str(batch_input), "-t", "{text}", "--cache", str(cache)], fake.url)
    assert again.returncode == 0 and fake.stats()["generate_requests"] == before
    assert all(json.loads(line)["cached"] for line in again.stdout.splitlines())


def test_shards_together_equal_the_unsharded_run(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 30)
    whole = run_cli(["run", str(path), "-t", "{text}"], fake.url)
    expected = {r["id"]: r["response"] for r in map(json.loads, whole.stdout.splitlines())}
    seen: dict[str, str] = {}
    for k in (1, 2, 3):
        out = tmp_path / f"shard{k}.jsonl"
        result = run_cli(["run", str(path), "-t", "{text}", "--shard", f"{k}/3", "-o", str(out)], fake.url)
        assert result.returncode == 0, result.stderr
        part = read_jsonl(out)
        assert not set(seen) & {r["id"] for r in part}
        seen.update({r["id"]: r["response"] for r in part})
    assert seen == expected


def test_another_shard_into_the_same_output_adds_its_rows_and_keeps_the_first(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    first = run_cli(["run", str(path), "-t", "{text}", "--shard", "1/2", "-o", str(out)], fake.url)
    assert first.returncode == 0, first.stderr
    shard1 = {r["id"] for r in read_jsonl(out)}
    other = run_cli(["run", str(path), "-t", "{text}", "--shard", "2/2", "-o", str(out)], fake.url)
    assert other.returncode == 0, other.stderr
    assert f"{len(shard1)} records are not part of this job" in other.stderr  # kept, and said so
    assert sorted(r["id"] for r in read_jsonl(out)) == [f"r{i:03d}" for i in range(1, 7)]
    assert fake.stats()["generate_requests"] == 6
    bad = run_cli(["run", str(path), "-t", "{text}", "--shard", "3/2"], fake.url)
    assert bad.returncode == 2 and "--shard" in bad.stderr


FAN_OUT_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro")


def fan_out_args(path: Path, out: Path) -> list[str]:
    """`gembulk run` of a CSV on two models at once, into OUT."""
    return [
        "run",
        str(path),
        "-t",
        "{text}",
        "-o",
        str(out),
        "-m",
        FAN_OUT_MODELS[0],
        "-m",
        FAN_OUT_MODELS[1],
    ]


def test_fan_out_runs_every_row_on_every_model_and_resumes_per_pair(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 5, {2: " [[fail:503:1]]"})
    out = tmp_path / "out.jsonl"
    args = fan_out_args(path, out)
    first = run_cli([*args, "--max-attempts", "1"], fake.url)
    assert first.returncode == 1  # the first attempt of row 2 fails, on each model
    records = read_jsonl(out)
    assert len(records) == 10
    assert {(r["id"], r["model"]) for r in records} == {
        (f"r{i:03d}", m) for i in range(1, 6) for m in ("gemini-2.5-flash", "gemini-2.5-pro")
    }
    sent = fake.stats()["generate_requests"]
    second = run_cli(args, fake.url)
    assert second.returncode == 0, second.stderr
    final = read_jsonl(out)
    assert len(final) == 10 and all(r["error"] is None for r in final)
    assert fake.stats()["generate_requests"] == sent + 2  # only the two failed (id, model) pairs again
    assert "8 already done" in second.stderr


def test_fan_out_with_batch_makes_a_job_per_model_and_resumes_per_pair(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 4, {2: " [[fail:503:1]]"})
    out = tmp_path / "out.jsonl"
    args = fan_out_args(path, out)
    online = run_cli([*args, "--max-attempts", "1"], fake.url)
    assert online.returncode == 1  # row 2 failed on each model: two pairs left
    batch = run_cli([*args, "--batch", "--fallback", "online", "--poll-interval", "0.05"], fake.url)
    assert batch.returncode == 0, batch.stderr
    state = json.loads((tmp_path / "out.jsonl.gembulk-batch.json").read_text())
    assert sorted(job["model"] or state["model"] for job in state["jobs"]) == [
        "gemini-2.5-flash",
        "gemini-2.5-pro",
    ]
    assert sum(job["rows"] for job in state["jobs"]) == 2  # only the unfinished (id, model) pairs
    records = read_jsonl(out)
    assert len(records) == 8 and all(r["error"] is None for r in records)
    redone = {(r["id"], r["model"]): r for r in records if r["id"] == "r002"}
    # the batch line failed (503 marker), so --fallback online finished each pair with its own model
    assert set(redone) == {("r002", "gemini-2.5-flash"), ("r002", "gemini-2.5-pro")}
    assert all(r["mode"] == "online" for r in redone.values())


def test_cache_with_detach_writes_hits_now_and_caches_the_fetched_answers(
    fake: FakeAPI, tmp_path: Path
) -> None:
    cache = tmp_path / "c.sqlite"
    warm = write_csv(tmp_path / "warm.csv", [{"id": f"w{i}", "text": f"row number {i}"} for i in (1, 2)])
    assert run_cli(["run", str(warm), "-t", "{text}", "--cache", str(cache)], fake.url).returncode == 0
    out = tmp_path / "o.jsonl"
    args = ["run", str(make_input(tmp_path, 5)), "-t", "{text}", "-o", str(out), "--cache", str(cache)]
    submitted = run_cli([*args, "--batch", "--detach"], fake.url)
    assert submitted.returncode == 0, submitted.stderr
    assert "2 rows answered from the cache" in submitted.stderr
    assert "batch job(s) for 3 rows" in submitted.stderr
    hits = by_id(read_jsonl(out))  # written at submission: the fetch skips them
    assert set(hits) == {"r001", "r002"} and all(r["cached"] and r["mode"] == "batch" for r in hits.values())

    fetched = run_cli(["batch", "wait", str(out), "--poll-interval", "0.1"], fake.url)
    assert fetched.returncode == 0, fetched.stderr
    records = by_id(read_jsonl(out))
    assert len(records) == 5 and records["r005"]["response"] == expected_text("row number 5")
    assert not records["r005"].get("cached")
    # the fetched answers went into the cache: an online run of the same rows calls nothing
    before = fake.stats()["generate_requests"]
    again = run_cli(["run", str(tmp_path / "in.csv"), "-t", "{text}", "--cache", str(cache)], fake.url)
    assert again.returncode == 0 and fake.stats()["generate_requests"] == before


def test_detach_with_every_row_in_the_cache_submits_nothing(fake: FakeAPI, tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite"
    path = make_input(tmp_path, 3)
    assert run_cli(["run", str(path), "-t", "{text}", "--cache", str(cache)], fake.url).returncode == 0
    out = tmp_path / "o.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "--cache", str(cache), "--batch", "--detach"]
    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert "the cache answered the 3 rows left" in result.stderr
    assert len(read_jsonl(out)) == 3 and fake.stats()["files_uploaded"] == 0
    assert not (tmp_path / "o.jsonl.gembulk-batch.json").exists()


def test_fan_out_with_batch_sends_each_model_its_own_rows(fake: FakeAPI, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    models = ["gemini-2.0-flash", "gemini-2.5-flash"]
    args = [
        "run",
        str(make_input(tmp_path, 3)),
        "-t",
        "{text}",
        "-o",
        str(out),
        "--batch",
        "--poll-interval",
        "0.05",
    ]
    result = run_cli([*args, "-m", models[0], "-m", models[1]], fake.url)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert sorted((r["id"], r["model"]) for r in records) == sorted(
        (f"r{i:03d}", m) for i in range(1, 4) for m in models
    )
    # Only the 2.5 model thinks: each record's usage shows which model's job really answered it.
    assert all((r["usage"]["thoughts_tokens"] > 0) == (r["model"] == "gemini-2.5-flash") for r in records)
    assert fake.stats()["batches_created"] == 2
