"""Users' files end to end: compressed inputs, pipes, CSV dialects, .json, Parquet, plain-text stdin."""

from __future__ import annotations

import gzip
import json
import os
import shlex
import subprocess
import threading
from pathlib import Path

import pytest

from gembulk.fake import expected_text
from tests.cli_support import FakeAPI, cli_env, gembulk_command, read_jsonl, run_cli

CSV = 'id,prompt\nr1,hello\nr2,"hi, there"\n'
ANSWERS = {"r1": expected_text("hello"), "r2": expected_text("hi, there")}


def answers(stdout: str) -> dict[str, str]:
    return {record["id"]: record["response"] for record in map(json.loads, stdout.splitlines())}


def zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard", reason="the zstd extra (zstandard) is not installed")
    return zstandard.ZstdCompressor().compress(data)


def shell(command: str, url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A bash command line (process substitution needs a shell), gembulk being `$GEMBULK`."""
    gembulk = " ".join(shlex.quote(part) for part in gembulk_command())
    return subprocess.run(
        ["bash", "-c", command.replace("$GEMBULK", gembulk)],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli_env(url, **env),
    )


@pytest.mark.parametrize(
    ("name", "pack", "extra"),
    [
        ("rows.csv.gz", gzip.compress, []),
        ("rows.csv.zst", zstd, []),
        ("rows.csv.gz", gzip.compress, ["--input-format", "csv"]),
        ("rows.gz", gzip.compress, ["--input-format", "csv"]),
    ],
)
def test_compressed_csv(fake: FakeAPI, tmp_path: Path, name: str, pack, extra: list[str]) -> None:
    path = tmp_path / name
    path.write_bytes(pack(CSV.encode()))
    result = run_cli(["run", str(path), *extra], fake.url)
    assert result.returncode == 0, result.stderr
    assert answers(result.stdout) == ANSWERS


def test_compressed_jsonl_and_a_gzip_pipe_on_stdin(fake: FakeAPI, tmp_path: Path) -> None:
    data = gzip.compress(b'{"id": "r1", "prompt": "hello"}\n{"id": "r2", "prompt": "hi, there"}\n')
    path = tmp_path / "rows.jsonl.gz"
    path.write_bytes(data)
    result = run_cli(["run", str(path)], fake.url)
    assert result.returncode == 0, result.stderr
    assert answers(result.stdout) == ANSWERS
    piped = shell(f"cat {shlex.quote(str(path))} | $GEMBULK run -", fake.url)
    assert piped.returncode == 0, piped.stderr
    assert answers(piped.stdout) == ANSWERS
    redirected = shell(f"$GEMBULK run /dev/stdin < {shlex.quote(str(path))}", fake.url)  # a file, no name
    assert redirected.returncode == 0, redirected.stderr
    assert answers(redirected.stdout) == ANSWERS


def test_process_substitution_and_a_fifo(fake: FakeAPI, tmp_path: Path) -> None:
    packed = tmp_path / "rows.csv.gz"
    packed.write_bytes(gzip.compress(CSV.encode()))
    out = tmp_path / "out.jsonl"
    result = shell(f"$GEMBULK run <(zcat {shlex.quote(str(packed))}) --input-format csv -o {out}", fake.url)
    assert result.returncode == 0, result.stderr
    assert {r["id"]: r["response"] for r in read_jsonl(out)} == ANSWERS
    # The same pipe again: the job is identified by the content, so the re-run has nothing left to do.
    again = shell(f"$GEMBULK run <(zcat {shlex.quote(str(packed))}) --input-format csv -o {out}", fake.url)
    assert again.returncode == 0, again.stderr
    assert fake.stats()["generate_requests"] == 2

    fifo = tmp_path / "rows.fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(packed.read_bytes()))
    writer.start()
    fed = run_cli(["run", str(fifo), "--input-format", "csv"], fake.url)
    writer.join()
    assert fed.returncode == 0, fed.stderr
    assert answers(fed.stdout) == ANSWERS


def test_a_pipe_of_unknown_format_says_which_options_read_it(fake: FakeAPI, tmp_path: Path) -> None:
    result = shell("$GEMBULK run <(printf 'id,prompt\\n1,a\\n')", fake.url)
    assert result.returncode == 2
    assert "--input-format txt" in result.stderr and "--input-format csv" in result.stderr
    assert fake.stats()["generate_requests"] == 0


def test_plain_text_on_stdin_without_a_format_names_txt(fake: FakeAPI) -> None:
    result = run_cli(["run", "-"], fake.url, stdin="Write a haiku about rain\nName three rivers\n")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (
        "gembulk: error: <stdin>: cannot tell the input format: it is not JSON "
        "(it starts with 'Write a haiku about rain'); for one prompt a line pass --input-format txt, "
        "for a table --input-format csv or tsv"
    )
    assert fake.stats()["generate_requests"] == 0
    ok = run_cli(["run", "-", "--input-format", "txt"], fake.url, stdin="Write a haiku about rain\n")
    assert ok.returncode == 0, ok.stderr
    assert answers(ok.stdout) == {"1": expected_text("Write a haiku about rain")}


def test_european_csv_and_delimiter(fake: FakeAPI, tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes("\ufeffid;prompt;price\r\nr1;hello;3,50\r\nr2;hi, there;4,00\r\n".encode())
    result = run_cli(["run", str(path)], fake.url)
    assert result.returncode == 0, result.stderr
    assert answers(result.stdout) == ANSWERS
    assert json.loads(result.stdout.splitlines()[0])["price"] == "3,50"

    piped = tmp_path / "pipe.csv"
    piped.write_text("id|prompt;note\nr1|hello;x\n", encoding="utf-8")
    forced = run_cli(["run", str(piped), "--delimiter", "|", "--prompt-column", "prompt;note"], fake.url)
    assert forced.returncode == 0, forced.stderr
    assert answers(forced.stdout) == {"r1": expected_text("hello;x")}

    wrong = run_cli(["run", str(piped), "--delimiter", "ab"], fake.url)
    assert wrong.returncode == 2
    assert "--delimiter 'ab': give one character" in wrong.stderr
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"prompt": "a"}\n', encoding="utf-8")
    misplaced = run_cli(["run", str(jsonl), "--delimiter", ";"], fake.url)
    assert misplaced.returncode == 2
    assert "--delimiter applies to CSV and TSV input, not jsonl" in misplaced.stderr
    assert fake.stats()["generate_requests"] == 3


def test_json_array_file_and_stdin(fake: FakeAPI, tmp_path: Path) -> None:
    rows = [{"id": "r1", "prompt": "hello", "tags": ["a"]}, {"id": "r2", "prompt": "hi, there", "tags": []}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    result = run_cli(["run", str(path)], fake.url)
    assert result.returncode == 0, result.stderr
    assert answers(result.stdout) == ANSWERS
    assert json.loads(result.stdout.splitlines()[0])["tags"] == ["a"]
    piped = run_cli(["run", "-"], fake.url, stdin=json.dumps(rows))
    assert piped.returncode == 0, piped.stderr
    assert answers(piped.stdout) == ANSWERS

    bad = tmp_path / "bad.json"
    bad.write_text('[{"prompt": "a"},\n "b"]', encoding="utf-8")
    refused = run_cli(["run", str(bad)], fake.url)
    assert refused.returncode == 2
    assert f"{bad}:2: a row must be a JSON object, found a string" in refused.stderr


def test_parquet_file_and_stdin(fake: FakeAPI, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="the parquet extra (pyarrow) is not installed")
    import pyarrow.parquet as pq

    table = pa.table({"id": [1, 2], "question": ["hello", "hi, there"], "tags": [["x"], None]})
    path = tmp_path / "rows.parquet"
    pq.write_table(table, path)
    result = run_cli(["run", str(path), "-t", "{question}"], fake.url)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert {r["id"]: r["response"] for r in records} == {"1": ANSWERS["r1"], "2": ANSWERS["r2"]}
    assert records[0]["tags"] == ["x"] and records[1]["tags"] is None
    piped = shell(f"cat {shlex.quote(str(path))} | $GEMBULK run - -t '{{question}}'", fake.url)
    assert piped.returncode == 0, piped.stderr
    assert len(piped.stdout.splitlines()) == 2


def test_batch_keeps_what_it_needs_to_read_the_input_again(fake: FakeAPI, tmp_path: Path) -> None:
    """A pipe, an explicit delimiter, a compressed file, a .json array and Parquet survive `batch fetch`."""
    packed = tmp_path / "semi.csv.gz"
    packed.write_bytes(gzip.compress(b"id|prompt\nr1|hello\nr2|hi, there\n"))
    json_rows = tmp_path / "rows.json"
    json_rows.write_text('[{"id": "r1", "prompt": "hello"}, {"id": "r2", "prompt": "hi, there"}]', "utf-8")
    submits = {
        "pipe": f"<(zcat {shlex.quote(str(packed))}) --input-format csv --delimiter '|'",
        "gz": f"{shlex.quote(str(packed))} --delimiter '|'",
        "json": shlex.quote(str(json_rows)),
    }
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = tmp_path / "rows.parquet"
        pq.write_table(pa.table({"id": ["r1", "r2"], "prompt": ["hello", "hi, there"]}), parquet)
        submits["parquet"] = shlex.quote(str(parquet))
    except ImportError:
        pass
    for name, source in submits.items():
        out = tmp_path / f"{name}.jsonl"
        submitted = shell(f"$GEMBULK run {source} -o {out} --batch --detach", fake.url)
        assert submitted.returncode == 0, (name, submitted.stderr)
        assert Path(f"{out}.gembulk-batch.input").exists() == (name == "pipe")  # a pipe is kept like stdin
        fetched = run_cli(["batch", "wait", str(out), "--poll-interval", "0.1"], fake.url)
        assert fetched.returncode == 0, (name, fetched.stderr)
        assert {r["id"]: r["response"] for r in read_jsonl(out)} == ANSWERS, name
        assert not Path(f"{out}.gembulk-batch.input").exists()  # the pipe's kept copy is gone after the fetch
