"""Users' habits for outputs, through the CLI against the fake: --keep-order, compressed outputs (.gz, .zst)
and Parquet, each with SIGKILL and resume, Ctrl-C and a reader that goes away."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
import time
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import zstandard

from gembulk.fake import expected_text
from tests.cli_support import FakeAPI, cli_env, gembulk_command, read_jsonl, run_cli, write_csv

MODELS = ("gemini-2.5-flash", "gemini-2.5-pro")
POLL = ["--poll-interval", "0.05", "--poll-max-interval", "0.1"]


def make_input(tmp_path: Path, n: int, markers: dict[int, str] | None = None, name: str = "in.csv") -> Path:
    markers = markers or {}
    rows = [{"id": f"r{i:03d}", "text": f"row {i}{markers.get(i, '')}"} for i in range(1, n + 1)]
    return write_csv(tmp_path / name, rows)


def ids(records: list[dict[str, Any]]) -> list[str]:
    return [record["id"] for record in records]


def in_order(n: int) -> list[str]:
    return [f"r{i:03d}" for i in range(1, n + 1)]


def start(args: list[str], fake: FakeAPI) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*gembulk_command(), *args],
        env=cli_env(fake.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def lines_in(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def complete_lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def assert_answered(records: list[dict[str, Any]], n: int) -> None:
    assert ids(records) == in_order(n)
    for record in records:
        assert record["error"] is None, record
        assert record["response"] == expected_text(record["text"])


# -- --keep-order -----------------------------------------------------------------------------------------


@pytest.mark.timing
def test_keep_order_streams_records_in_input_order_past_a_slow_and_a_retried_row(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 30, {2: " [[sleep:0.6]]", 5: " [[fail:503:1]]"})
    args = ["run", str(path), "-t", "{text}", "-c", "8"]
    plain = run_cli(args, fake.url)
    assert plain.returncode == 0, plain.stderr
    assert ids([json.loads(line) for line in plain.stdout.splitlines()])[:2] != ["r001", "r002"]
    ordered = run_cli([*args, "--keep-order"], fake.url)
    assert ordered.returncode == 0, ordered.stderr
    assert_answered([json.loads(line) for line in ordered.stdout.splitlines()], 30)


def test_the_order_buffer_bounds_what_is_dispatched_past_a_slow_row(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 40, {1: " [[sleep:0.8]]"})
    out = tmp_path / "out.jsonl"
    args = [
        "run",
        str(path),
        "-t",
        "{text}",
        "-c",
        "16",
        "-o",
        str(out),
        "--keep-order",
        "--order-buffer",
        "5",
    ]
    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert_answered(read_jsonl(out), 40)
    # Row 1 sleeps; only rows 2-5 may finish meanwhile and wait for it in the buffer.
    assert fake.stats()["peak_in_flight"] <= 5
    assert not Path(f"{out}.gembulk-held").exists()
    refused = run_cli(["run", str(path), "-t", "{text}", "--order-buffer", "5"], fake.url)
    assert refused.returncode == 2 and "--order-buffer works only with --keep-order" in refused.stderr


def test_keep_order_with_several_models_is_id_then_model_order(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.02, jitter=0.02)
    path = make_input(tmp_path, 12)
    models = [arg for model in MODELS for arg in ("-m", model)]
    result = run_cli(["run", str(path), "-t", "{text}", *models, "--keep-order", "-c", "8"], fake.url)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["model"]) for r in records] == [(i, m) for i in in_order(12) for m in MODELS]


def assert_requested_once(finished: Iterable[dict[str, Any]], before: dict[str, int], fake: FakeAPI) -> None:
    """Each finished row was requested once before the re-run (`before`) and not at all by it (the fake
    was reset in between)."""
    after = fake.stats()["by_prompt"]
    for record in finished:
        assert before[record["text"]] == 1 and record["text"] not in after


def killed_while_holding(fake: FakeAPI, tmp_path: Path, out: Path, n: int) -> Path:
    """SIGKILL a --keep-order run of n rows once 20 rows finished after row 3, which sleeps, are held
    beside OUT (not in it); returns the held file."""
    path = make_input(tmp_path, n, {3: " [[sleep:3]]"})
    held = Path(f"{out}.gembulk-held")
    process = start(["run", str(path), "-t", "{text}", "-o", str(out), "-c", "4", "--keep-order"], fake)
    wait_until(lambda: lines_in(held) >= 20)
    process.kill()
    process.wait(timeout=10)
    return held


@pytest.mark.timing
def test_sigkill_keeps_the_held_records_and_the_rerun_finishes_in_order(
    fake: FakeAPI, tmp_path: Path
) -> None:
    n = 60
    out = tmp_path / "out.jsonl"
    held = killed_while_holding(fake, tmp_path, out, n)
    finished = {r["id"]: r for r in complete_lines(out) + complete_lines(held)}
    assert ids(complete_lines(out)) == ["r001", "r002"]
    before = fake.stats()["by_prompt"]

    fake.reset()
    path2 = make_input(tmp_path, n, name="in2.csv")  # the same rows, row 3 without its sleep
    result = run_cli(["run", str(path2), "-t", "{text}", "-o", str(out), "--keep-order"], fake.url)
    assert result.returncode == 0, result.stderr
    assert "held back are added" in result.stderr
    assert_answered(read_jsonl(out), n)
    assert not held.exists()
    assert_requested_once(finished.values(), before, fake)  # written or held: not requested again


@pytest.mark.timing
def test_sigint_writes_the_held_records_and_the_rerun_sorts_the_output(fake: FakeAPI, tmp_path: Path) -> None:
    n = 40
    path = make_input(tmp_path, n, {2: " [[sleep:3]]"})
    out = tmp_path / "out.jsonl"
    held = Path(f"{out}.gembulk-held")
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "-c", "4", "--keep-order"]
    process = start(args, fake)
    wait_until(lambda: lines_in(held) >= 10)
    process.send_signal(signal.SIGINT)
    time.sleep(0.3)  # two signals sent at once may arrive as one
    process.send_signal(signal.SIGINT)  # the second: do not wait for row 2
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    partial = read_jsonl(out)
    assert len(partial) >= 11 and "r002" not in ids(partial)  # r001, then what was held, in order
    assert ids(partial) == sorted(ids(partial))
    assert not held.exists()
    path2 = make_input(tmp_path, n, name="in2.csv")
    result = run_cli(["run", str(path2), "-t", "{text}", "-o", str(out), "--keep-order"], fake.url)
    assert result.returncode == 0, result.stderr
    assert_answered(read_jsonl(out), n)


@pytest.mark.timing
def test_sigkill_with_keep_order_on_a_gzip_output_folds_the_held_records_in(
    fake: FakeAPI, tmp_path: Path
) -> None:
    n = 60
    out = tmp_path / "out.jsonl.gz"
    held = killed_while_holding(fake, tmp_path, out, n)  # held uncompressed beside the compressed OUT
    written = [json.loads(line) for line in decompress(out).splitlines()] if out.exists() else []
    assert ids(written) == ["r001", "r002"][: len(written)]
    finished = written + complete_lines(held)
    before = fake.stats()["by_prompt"]

    fake.reset()
    path2 = make_input(tmp_path, n, name="in2.csv")  # the same rows, row 3 without its sleep
    result = run_cli(["run", str(path2), "-t", "{text}", "-o", str(out), "--keep-order"], fake.url)
    assert result.returncode == 0, result.stderr
    assert "held back are added" in result.stderr
    decoder = zlib.decompressobj(31)
    text = decoder.decompress(out.read_bytes())
    assert decoder.eof and not decoder.unused_data  # one gzip stream once the run completed
    assert_answered([json.loads(line) for line in text.splitlines()], n)
    assert not held.exists()
    assert_requested_once(finished, before, fake)  # written or held: not requested again


def test_keep_order_on_stdout_to_a_reader_that_goes_away_exits_141(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.01)
    n = 3000
    rows = "".join(f"line {i}{' [[sleep:0.5]]' if i == 2 else ''}\n" for i in range(1, n + 1))
    (tmp_path / "big.txt").write_text(rows, encoding="utf-8")
    command = f"set -o pipefail; {' '.join(gembulk_command())} run big.txt -c 4 --keep-order | head -3"
    result = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(fake.url),
        cwd=tmp_path,
    )
    assert result.returncode == 141, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ["1", "2", "3"]
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    assert fake.stats()["generate_requests"] < n  # stopped dispatching once nobody read the records


def test_keep_order_with_several_models_through_the_batch_api(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 7)
    out = tmp_path / "out.jsonl"
    models = [arg for model in reversed(MODELS) for arg in ("-m", model)]
    args = ["run", str(path), "-t", "{text}", *models, "-o", str(out), "--batch", "--keep-order", *POLL]
    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert [(r["id"], r["model"]) for r in records] == [(i, m) for i in in_order(7) for m in reversed(MODELS)]
    assert all(r["error"] is None and r["mode"] == "batch" for r in records)


def test_keep_order_puts_a_resumed_output_in_input_order(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.02, jitter=0.03)
    n = 30
    path = make_input(tmp_path, n, {4: " [[fail:503:1]]", 17: " [[fail:500:1]]"})
    out = tmp_path / "out.jsonl"
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "-c", "8"]
    first = run_cli([*args, "--max-attempts", "1"], fake.url)
    assert first.returncode == 1, first.stderr
    assert ids(read_jsonl(out)) != in_order(n)
    second = run_cli([*args, "--keep-order"], fake.url)
    assert second.returncode == 0, second.stderr
    assert_answered(read_jsonl(out), n)


def test_keep_order_with_batch_sorts_cache_hits_and_batch_results(fake: FakeAPI, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    some = write_csv(tmp_path / "some.csv", [{"id": f"r{i:03d}", "text": f"row {i}"} for i in (4, 9)])
    assert run_cli(["run", str(some), "-t", "{text}", "--cache", str(cache)], fake.url).returncode == 0
    path = make_input(tmp_path, 10)
    for keep, name in ((False, "plain.jsonl"), (True, "ordered.jsonl")):
        out = tmp_path / name
        args = ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--cache", str(cache), *POLL]
        result = run_cli([*args, "--keep-order"] if keep else args, fake.url)
        assert result.returncode == 0, result.stderr
        records = read_jsonl(out)
        if keep:
            assert_answered(records, 10)
        else:
            assert ids(records)[:2] == ["r004", "r009"]  # the cache's answers came first
    refused = run_cli(["run", str(path), "-t", "{text}", "--batch", "--keep-order"], fake.url)
    assert refused.returncode == 2 and "--keep-order with --batch needs -o FILE" in refused.stderr


def test_a_detached_batch_keeps_the_order_for_the_fetch(fake: FakeAPI, tmp_path: Path) -> None:
    cache = tmp_path / "cache.sqlite"
    some = write_csv(tmp_path / "some.csv", [{"id": "r005", "text": "row 5"}])
    assert run_cli(["run", str(some), "-t", "{text}", "--cache", str(cache)], fake.url).returncode == 0
    path = make_input(tmp_path, 8)
    out = tmp_path / "out.jsonl.gz"
    submit = ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--detach", "--keep-order"]
    detached = run_cli([*submit, "--cache", str(cache)], fake.url)
    assert detached.returncode == 0, detached.stderr
    assert json.loads(Path(f"{out}.gembulk-batch.json").read_text())["keep_order"] is True
    deadline = time.monotonic() + 20
    while (fetched := run_cli(["batch", "fetch", str(out)], fake.url)).returncode == 4:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert fetched.returncode == 0, fetched.stderr
    assert_answered([json.loads(line) for line in gzip.decompress(out.read_bytes()).splitlines()], 8)


# -- compressed outputs -------------------------------------------------------------------------------------


def decompress(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.suffix == ".gz" else _zstd_all(data)


def _zstd_all(data: bytes) -> bytes:
    out = b""
    while data:
        decoder = zstandard.ZstdDecompressor().decompressobj()
        out += decoder.decompress(data)
        data = decoder.unused_data
    return out


def torn_member(suffix: str) -> bytes:
    """The first half of a member: what a write cut short by a crash leaves."""
    record = b'{"id": "r999", "error": null}\n' * 20
    whole = gzip.compress(record) if suffix == ".gz" else zstandard.ZstdCompressor().compress(record)
    return whole[: len(whole) // 2]


@pytest.mark.timing
@pytest.mark.parametrize("suffix", [".gz", ".zst"])
def test_a_compressed_output_resumes_after_sigkill_and_a_torn_member(
    fake: FakeAPI, tmp_path: Path, suffix: str
) -> None:
    fake.configure(latency=0.1)
    n = 50
    path = make_input(tmp_path, n)
    out = tmp_path / f"out.jsonl{suffix}"
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "-c", "4"]
    process = start(args, fake)
    wait_until(lambda: out.exists() and decompress(out).count(b"\n") >= 12)
    process.kill()
    process.wait(timeout=10)
    finished = [json.loads(line) for line in decompress(out).splitlines()]
    assert 12 <= len(finished) < n
    with out.open("ab") as handle:
        handle.write(torn_member(suffix))
    before = fake.stats()["by_prompt"]
    fake.reset()
    fake.configure(latency=0.0)
    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert "torn" in result.stderr
    records = sorted((json.loads(line) for line in decompress(out).splitlines()), key=lambda r: r["id"])
    assert_answered(records, n)
    assert_requested_once(finished, before, fake)


def test_a_compressed_csv_has_one_header_and_is_one_stream_when_complete(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 20, {7: " [[fail:500:1]]"})
    out = tmp_path / "out.csv.gz"
    args = ["run", str(path), "-t", "{text}", "-o", str(out)]
    assert run_cli([*args, "--max-attempts", "1"], fake.url).returncode == 1
    result = run_cli([*args, "--keep-order"], fake.url)
    assert result.returncode == 0, result.stderr
    decoder = zlib.decompressobj(31)
    text = decoder.decompress(out.read_bytes()).decode()
    assert decoder.eof and not decoder.unused_data  # rewritten as a single gzip member
    lines = text.splitlines()
    assert lines[0].startswith("id,response,") and text.count("id,response,") == 1
    assert [line.split(",")[0] for line in lines[1:]] == in_order(20)


def test_an_output_whose_name_and_content_disagree_is_refused(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 3)
    gz = tmp_path / "out.jsonl.gz"
    assert run_cli(["run", str(path), "-t", "{text}", "-o", str(gz)], fake.url).returncode == 0
    plain_named = tmp_path / "copy.jsonl"
    plain_named.write_bytes(gz.read_bytes())
    refused = run_cli(["run", str(path), "-t", "{text}", "-o", str(plain_named)], fake.url)
    assert refused.returncode == 2, refused.stderr
    assert "holds gzip-compressed records; name it with .gz" in refused.stderr
    compressed_named = tmp_path / "other.jsonl.zst"
    compressed_named.write_bytes(gzip.decompress(gz.read_bytes()))
    refused = run_cli(["run", str(path), "-t", "{text}", "-o", str(compressed_named)], fake.url)
    assert refused.returncode == 2 and "is not zstd-compressed" in refused.stderr
    assert fake.stats()["generate_requests"] == 3


def test_a_missing_optional_package_names_its_extra(fake: FakeAPI, tmp_path: Path) -> None:
    blocker = tmp_path / "blocked"
    for package in ("pyarrow", "zstandard"):
        (blocker / package).mkdir(parents=True)
        (blocker / package / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    path = make_input(tmp_path, 2)
    for out, extra in (("out.parquet", "gembulk[parquet]"), ("out.jsonl.zst", "gembulk[zstd]")):
        result = run_cli(
            ["run", str(path), "-t", "{text}", "-o", str(tmp_path / out)], fake.url, PYTHONPATH=str(blocker)
        )
        assert result.returncode == 2, result.stderr
        assert extra in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / out).exists()
    assert fake.stats()["generate_requests"] == 0


# -- Parquet -------------------------------------------------------------------------------------------------


def parquet_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a Parquet output, each with "error" (its error_status) as a record has."""
    return [{**row, "error": row["error_status"]} for row in pq.read_table(path).to_pylist()]


def test_parquet_has_the_csv_columns_typed_and_nested_values_as_json(fake: FakeAPI, tmp_path: Path) -> None:
    rows = [
        {"id": "a", "text": "one", "n": 1, "score": 0.5, "meta": {"k": [1, 2]}, "flag": True},
        {"id": "b", "text": "two [[fail:500:1]]", "n": 2, "score": 2, "meta": "plain", "flag": False},
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"label": {"type": "string"}}}))
    out = tmp_path / "out.parquet"
    args = [
        "run",
        str(path),
        "-t",
        "{text}",
        "-o",
        str(out),
        "--json-schema",
        str(schema),
        "--max-attempts",
        "1",
    ]
    result = run_cli(args, fake.url)
    assert result.returncode == 1, result.stderr
    table = pq.read_table(out)
    types = {field.name: str(field.type) for field in table.schema}
    assert list(types)[:13] == [
        "id", "response", "error_code", "error_status", "error_message", "finish_reason", "prompt_tokens",
        "output_tokens", "thoughts_tokens", "total_tokens", "cached_tokens", "model", "parsed",
    ]  # fmt: skip
    assert types["prompt_tokens"] == types["error_code"] == types["n"] == "int64"
    assert (types["score"], types["flag"], types["meta"], types["parsed"]) == (
        "double",
        "bool",
        "string",
        "string",
    )
    metadata = json.loads(table.schema.metadata[b"gembulk"])
    assert metadata["json_columns"] == ["meta"]
    a, b = table.to_pylist()
    assert json.loads(a["parsed"]) == {"label": "label: one"} and json.loads(a["meta"]) == {"k": [1, 2]}
    assert json.loads(b["meta"]) == "plain" and b["error_code"] == 500 and b["response"] is None
    assert not Path(f"{out}.gembulk-partial.jsonl").exists()


@pytest.mark.timing
def test_parquet_resumes_after_sigkill_through_its_records_beside_it(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.1)
    n = 50
    path = make_input(tmp_path, n)
    out = tmp_path / "out.parquet"
    partial = Path(f"{out}.gembulk-partial.jsonl")
    args = ["run", str(path), "-t", "{text}", "-o", str(out), "-c", "4", "--keep-order"]
    process = start(args, fake)
    wait_until(lambda: lines_in(partial) >= 12)
    process.kill()
    process.wait(timeout=10)
    assert not out.exists()
    finished = complete_lines(partial)
    before = fake.stats()["by_prompt"]
    fake.reset()
    fake.configure(latency=0.0)
    result = run_cli(args, fake.url)
    assert result.returncode == 0, result.stderr
    assert_answered(parquet_rows(out), n)
    assert not partial.exists()
    assert_requested_once(finished, before, fake)


def test_parquet_resumes_from_the_parquet_file_and_sends_only_an_edited_row(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 10)
    out = tmp_path / "out.parquet"
    args = ["run", str(path), "-t", "{text}", "-o", str(out)]
    assert run_cli(args, fake.url).returncode == 0
    again = run_cli(args, fake.url)
    assert again.returncode == 0 and "10 already done" in again.stderr
    edited = make_input(tmp_path, 10, {6: " (edited)"}, name="edited.csv")
    result = run_cli(["run", str(edited), "-t", "{text}", "-o", str(out), "--keep-order"], fake.url)
    assert result.returncode == 0, result.stderr
    records = parquet_rows(out)
    assert_answered(records, 10)
    assert records[5]["text"] == "row 6 (edited)"
    assert fake.stats()["generate_requests"] == 11
    assert not Path(f"{out}.gembulk-partial.jsonl").exists()


def test_parquet_through_the_batch_api_and_what_is_refused(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 6)
    out = tmp_path / "out.parquet"
    result = run_cli(
        ["run", str(path), "-t", "{text}", "-o", str(out), "--batch", "--keep-order", *POLL], fake.url
    )
    assert result.returncode == 0, result.stderr
    records = parquet_rows(out)
    assert_answered(records, 6)
    for args, message in (
        (["--output-format", "parquet"], "Parquet output needs -o FILE.parquet"),
        (["-o", str(tmp_path / "x.parquet.gz")], "Parquet compresses its own columns"),
    ):
        refused = run_cli(["run", str(path), "-t", "{text}", *args], fake.url)
        assert refused.returncode == 2 and message in refused.stderr, refused.stderr
