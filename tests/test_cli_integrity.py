"""Nothing lost, nothing stale: every row of the integrity issue's table, through the CLI against the fake.

Overlapping runs, --overwrite typos, edited and moved inputs, chaining, outputs a shell can name, local
I/O failures (a real small tmpfs when root), closed pipes and standard streams, a compaction killed
midway, the files at rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gembulk.fake import expected_text
from tests.cli_support import (
    FakeAPI,
    by_id,
    cli_env,
    gembulk_command,
    read_jsonl,
    run_cli,
    start_cli,
    write_csv,
)


def make_input(tmp_path: Path, n: int, name: str = "in.csv", prefix: str = "row") -> Path:
    rows = [{"id": f"r{i:03d}", "text": f"{prefix} {i}"} for i in range(1, n + 1)]
    return write_csv(tmp_path / name, rows)


def run_args(path: Path, out: Path | str, *extra: str) -> list[str]:
    return ["run", str(path), "-t", "{text}", "-o", str(out), *extra]


def assert_one_answer_per_row(out: Path, n: int, prefix: str = "row") -> list[dict]:
    records = read_jsonl(out)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == n, "duplicate or missing records"
    for record in records:
        assert record["error"] is None, record
        assert record["response"] == expected_text(record["text"])
        assert record["text"].startswith(prefix)
        assert len(record["fingerprint"]) == 16
    return records


def bash(command: str, url: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=timeout, env=cli_env(url), cwd=cwd
    )


GEMBULK = " ".join(gembulk_command())


# -- 1. one writer per output ----------------------------------------------------------------------


@pytest.mark.timing
def test_an_overlapping_run_exits_4_at_once_and_writes_nothing(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.1)
    n = 200  # five seconds at -c 4: the second run starts well within them
    path = make_input(tmp_path, n)
    out = tmp_path / "out.jsonl"
    first = start_cli(run_args(path, out, "-c", "4"), fake.url)
    try:
        deadline = time.monotonic() + 20
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.02)
        second = run_cli([*run_args(path, out, "-c", "8"), "--api-key", "SECRET-ON-THE-LINE"], fake.url)
        assert second.returncode == 4, second.stderr
        lines = [line for line in second.stderr.splitlines() if "being written" in line]
        assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "gembulk run" in lines[0]
        assert "SECRET" not in second.stderr
        _, stderr = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert_one_answer_per_row(out, n)
    assert fake.stats()["generate_requests"] == n
    again = run_cli(run_args(path, out), fake.url)
    assert again.returncode == 0 and fake.stats()["generate_requests"] == n
    assert not (tmp_path / "out.jsonl.gembulk.lock").exists()


def test_batch_commands_share_the_lock(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    submitted = run_cli(run_args(path, out, "--batch", "--detach"), fake.url)
    assert submitted.returncode == 0, submitted.stderr
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from gembulk.outputs import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        for args in (["batch", "fetch", str(out)], run_args(path, out, "--batch"), run_args(path, out)):
            result = run_cli(args, fake.url)
            assert result.returncode == 4, (args, result.stderr)
            assert "being written by another gembulk" in result.stderr
        assert not out.exists() and fake.stats()["generate_requests"] == 0
    finally:
        holder.kill()  # SIGKILL: its lock goes with it
        holder.wait(10)
    result = run_cli(["batch", "wait", str(out), "--poll-interval", "0.1"], fake.url)
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(out)) == 3


# -- 2 and 4. --overwrite replaces only on success; a run that answered nothing leaves nothing ------


def test_overwrite_that_fails_at_the_start_leaves_the_output_byte_identical(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 5)
    out = tmp_path / "done.jsonl"
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    before = out.read_bytes()
    typo = run_cli([*run_args(path, out), "--overwrite", "-m", "gemini-2.5-flsh"], fake.url)
    assert typo.returncode == 3, typo.stderr
    assert out.read_bytes() == before
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    bad_cache = run_cli([*run_args(path, out), "--overwrite", "--cache", str(garbage)], fake.url)
    assert bad_cache.returncode == 2, bad_cache.stderr
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.jsonl", "garbage.sqlite", "in.csv"]
    replaced = run_cli([*run_args(path, out), "--overwrite", "-t", "Other: {text}"], fake.url)
    assert replaced.returncode == 0, replaced.stderr
    assert all(r["response"] == expected_text("Other: " + r["text"]) for r in read_jsonl(out))


def test_a_refused_model_leaves_nothing_that_blocks_the_corrected_command(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    typo = run_cli([*run_args(path, out), "-m", "gemini-2.5-flsh"], fake.url)
    assert typo.returncode == 3, typo.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no empty OUT, no job file
    fixed = run_cli(run_args(path, out), fake.url)
    assert fixed.returncode == 0, fixed.stderr
    assert_one_answer_per_row(out, 4)


# -- 3. resume is keyed by the request -------------------------------------------------------------


def test_an_edited_row_is_sent_again_and_its_stale_answer_replaced(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 6)
    out = tmp_path / "out.jsonl"
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    path.write_text(path.read_text().replace("row 3", "row three"), encoding="utf-8")
    result = run_cli(run_args(path, out), fake.url)
    assert result.returncode == 0, result.stderr
    assert fake.stats()["generate_requests"] == 7  # six, then exactly the edited one
    records = by_id(read_jsonl(out))
    assert len(read_jsonl(out)) == 6
    assert records["r003"]["response"] == expected_text("row three")
    path.write_text(path.read_text().replace("row three", "row 3"), encoding="utf-8")
    undone = run_cli(run_args(path, out), fake.url)  # the edit undone: a request answered before
    assert undone.returncode == 0 and fake.stats()["generate_requests"] == 8
    assert by_id(read_jsonl(out))["r003"]["response"] == expected_text("row 3")


def test_the_same_input_at_another_path_resumes_with_no_request(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 5)
    out = tmp_path / "out.jsonl"
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    elsewhere = tmp_path / "copy" / "in-renamed.csv"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(path.read_bytes())
    result = run_cli(run_args(elsewhere, out), fake.url)
    assert result.returncode == 0, result.stderr
    assert "5 already done" in result.stderr
    assert fake.stats()["generate_requests"] == 5


def test_another_template_sends_every_row_again_with_or_without_a_job_file(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = make_input(tmp_path, 4)
    out = tmp_path / "out.jsonl"
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    (tmp_path / "out.jsonl.gembulk.json").write_text("{}")  # the job file of an earlier version
    result = run_cli(["run", str(path), "-t", "Translate: {text}", "-o", str(out)], fake.url)
    assert result.returncode == 0, result.stderr
    assert fake.stats()["generate_requests"] == 8
    assert all(r["response"] == expected_text("Translate: " + r["text"]) for r in read_jsonl(out))
    assert len(read_jsonl(out)) == 4
    assert not (tmp_path / "out.jsonl.gembulk.json").exists()  # deleted by the completed run


def test_records_of_an_earlier_version_are_sent_once_more(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    legacy = [
        {"id": f"r{i:03d}", "response": "old", "error": None, "model": "gemini-2.5-flash"} for i in (1, 2)
    ]
    out.write_text("".join(json.dumps(r) + "\n" for r in legacy), encoding="utf-8")
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    assert fake.stats()["generate_requests"] == 3
    assert_one_answer_per_row(out, 3)
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    assert fake.stats()["generate_requests"] == 3


def test_another_model_keeps_the_paid_answers_and_says_so(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 3)
    out = tmp_path / "out.jsonl"
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    result = run_cli([*run_args(path, out), "-m", "gemini-2.5-pro"], fake.url)
    assert result.returncode == 0, result.stderr
    assert "3 records are not part of this job" in result.stderr
    models = sorted((r["id"], r["model"]) for r in read_jsonl(out))
    assert len(models) == 6 and {m for _, m in models} == {"gemini-2.5-flash", "gemini-2.5-pro"}


# -- 5. chaining loses nothing ---------------------------------------------------------------------


def test_chaining_keeps_the_first_stage_fields_and_fails_rows_with_no_value(
    fake: FakeAPI, tmp_path: Path
) -> None:
    rows = [{"id": "a", "text": "one"}, {"id": "b", "text": "[[invalid]] two"}, {"id": "c", "text": "three"}]
    path = write_csv(tmp_path / "a.csv", rows)
    command = (
        f"{GEMBULK} run a.csv -t '{{text}}' -q | {GEMBULK} run - -t 'Check this answer: {{response}}' -q"
    )
    result = bash(f"set -o pipefail; {command}", fake.url, tmp_path)
    assert result.returncode == 1, result.stderr  # stage 1 and stage 2 both have one failed row
    assert path.exists()
    records = by_id([json.loads(line) for line in result.stdout.splitlines()])
    assert records["a"]["response"] == expected_text("Check this answer: " + expected_text("one"))
    stage1 = records["a"]["input"]
    assert stage1["response"] == expected_text("one") and stage1["model"] == "gemini-2.5-flash"
    assert stage1["usage"]["total_tokens"] > 0 and len(stage1["fingerprint"]) == 16
    assert records["a"]["text"] == "one"
    failed = records["b"]
    assert failed["error"]["status"] == "MISSING_VALUE" and "response" in failed["error"]["message"]
    assert failed["input"]["error"]["status"] == "INVALID_ARGUMENT"  # why stage 1 failed, kept
    assert fake.stats()["by_prompt"].get("Check this answer: ") is None  # never sent empty
    assert fake.stats()["generate_requests"] == 3 + 2


def test_an_input_id_that_is_not_the_id_column_is_kept(fake: FakeAPI, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "in.csv", [{"id": "x1", "key": "k1", "text": "hello", "model": "mine"}])
    result = run_cli(["run", str(path), "-t", "{text}", "--id-column", "key"], fake.url)
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["id"] == "k1" and record["model"] == "gemini-2.5-flash"
    assert record["input"] == {"id": "x1", "model": "mine"}
    csv_out = tmp_path / "out.csv"
    assert (
        run_cli(
            ["run", str(path), "-t", "{text}", "--id-column", "key", "-o", str(csv_out)], fake.url
        ).returncode
        == 0
    )
    header = csv_out.read_text().splitlines()[0].split(",")
    assert header[-5:] == ["fingerprint", "input.id", "key", "text", "input.model"]


def test_rows_that_cannot_be_sent_fail_alone_and_a_fixed_prompt_is_warned_about(
    fake: FakeAPI, tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    lines = [{"id": "1", "text": "hi"}, {"id": "2"}, {"id": "3", "text": None}, {"id": "4", "text": "   "}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = run_cli(["run", str(path), "-t", "{text}", "-o", str(out)], fake.url)
    assert result.returncode == 1, result.stderr
    statuses = {r["id"]: (r["error"] or {}).get("status") for r in read_jsonl(out)}
    assert statuses == {"1": None, "2": "MISSING_VALUE", "3": "MISSING_VALUE", "4": "EMPTY_PROMPT"}
    assert fake.stats()["generate_requests"] == 1
    again = run_cli(["run", str(path), "-t", "{text}", "-o", str(out)], fake.url)
    assert again.returncode == 1 and len(read_jsonl(out)) == 4  # failed again, still one record each
    first_lacks = tmp_path / "first.jsonl"
    first_lacks.write_text('{"id": "1"}\n{"id": "2", "text": "x"}\n', encoding="utf-8")
    per_row = run_cli(["run", str(first_lacks), "-t", "{text}"], fake.url)
    assert per_row.returncode == 1, per_row.stderr  # not exit 2: only row 1 lacks the field
    fixed = run_cli(["run", str(path), "-t", "Say hello", "--dry-run"], fake.url)
    assert fixed.returncode == 0
    assert "warning: the template has no {placeholder}: every row gets the same prompt" in fixed.stderr


# -- 6. any output a shell can name ----------------------------------------------------------------


def test_outputs_that_are_not_regular_files_are_written_as_streams(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 4)
    null = run_cli(run_args(path, "/dev/null"), fake.url)
    assert null.returncode == 0, null.stderr
    assert not any(name.startswith("null.") for name in os.listdir("/dev"))
    stdout = run_cli(run_args(path, "/dev/stdout", "-q"), fake.url)
    assert stdout.returncode == 0 and len(stdout.stdout.splitlines()) == 4
    substituted = bash(
        f"{GEMBULK} run in.csv -t '{{text}}' -q -o >(wc -l > counted.txt); sleep 0.5", fake.url, tmp_path
    )
    assert substituted.returncode == 0, substituted.stderr
    counted = tmp_path / "counted.txt"
    deadline = time.monotonic() + 10
    while not (counted.exists() and counted.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)  # the substituted process finishes on its own time
    assert counted.read_text().strip() == "4"
    fifo = tmp_path / "records.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()))
    reader.start()
    through_fifo = run_cli(run_args(path, fifo), fake.url)
    reader.join(10)
    assert through_fifo.returncode == 0, through_fifo.stderr
    assert len(received[0].splitlines()) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counted.txt", "in.csv", "records.fifo"]


# -- 7. local I/O failures are user errors ---------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mount: Path, options: str, *, refused: str) -> Iterator[None]:
    """A real tmpfs mounted on `mount` with `options`, unmounted at the end; the test is skipped (saying
    `refused` and why) where mount refuses it."""
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"{refused}: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs, unmounted at the end."""
    if os.geteuid() != 0:
        pytest.skip(
            "mounting a small tmpfs needs root; the disk-full case is covered when the suite runs as root"
        )
    mount = tmp_path / "small"
    mount.mkdir()
    with tmpfs(mount, "size=64k", refused="mount refused a tmpfs here"):
        yield mount


def test_a_full_disk_stops_the_run_with_exit_3_and_the_rerun_completes(
    fake: FakeAPI, tmp_path: Path, small_disk: Path
) -> None:
    fake.configure(latency=0.005)
    n = 400  # about 450 bytes a record: some 180 KB, the disk holds 64 KiB
    path = make_input(tmp_path, n, prefix="row " + "x" * 100)
    out = small_disk / "out.jsonl"
    full = run_cli(run_args(path, out, "-c", "4"), fake.url)
    assert full.returncode == 3, full.stderr
    assert f"gembulk: error: cannot write {out}: No space left on device" in full.stderr
    assert "Traceback" not in full.stderr and "internal error" not in full.stderr, full.stderr[-3000:]
    sent = fake.stats()["generate_requests"]
    assert sent < n * 3 // 4  # dispatching stopped
    kept = [json.loads(line) for line in out.read_bytes().splitlines(keepends=True) if line.endswith(b"\n")]
    assert kept and all(r["error"] is None for r in kept)
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True)
    again = run_cli(run_args(path, out, "-c", "4"), fake.url)
    assert again.returncode == 0, again.stderr
    assert_one_answer_per_row(out, n, prefix="row x")
    by_prompt = fake.stats()["by_prompt"]
    assert all(by_prompt[r["text"]] == 1 for r in kept)  # what reached the disk was not paid again
    assert fake.stats()["generate_requests"] <= sent + n - len(kept)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o500)
        yield folder
        folder.chmod(0o700)
        return
    with tmpfs(folder, "ro,size=64k", refused="root ignores permissions and a read-only mount was refused"):
        yield folder


def test_unwritable_outputs_are_refused_before_anything_is_sent(
    fake: FakeAPI, tmp_path: Path, read_only_dir: Path
) -> None:
    path = make_input(tmp_path, 2)
    cases = {
        str(read_only_dir / "out.jsonl"): f"cannot create files in {read_only_dir}",
        str(tmp_path): "is a directory",
        str(tmp_path / "missing" / "out.jsonl"): "does not exist",
    }
    for out, reason in cases.items():
        result = run_cli(run_args(path, out), fake.url)
        assert result.returncode == 2, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("gembulk: error:")]
        assert len(errors) == 1 and reason in errors[0] and out in errors[0]
    assert fake.stats()["generate_requests"] == 0


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root may read and write any file: the permission case needs a user"
)
def test_an_output_without_permission_is_refused(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 2)
    out = tmp_path / "out.jsonl"
    out.write_text("")
    out.chmod(0o400)
    result = run_cli(run_args(path, out), fake.url)
    assert result.returncode == 2 and "permission denied" in result.stderr


# -- 8. pipes and closed streams -------------------------------------------------------------------


def test_a_reader_that_goes_away_stops_the_run_with_141(fake: FakeAPI, tmp_path: Path) -> None:
    fake.configure(latency=0.01)
    (tmp_path / "big.txt").write_text("".join(f"line {i}\n" for i in range(3000)), encoding="utf-8")
    result = bash(f"set -o pipefail; {GEMBULK} run big.txt -c 4 | head -3", fake.url, tmp_path)
    assert result.returncode == 141, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    assert fake.stats()["generate_requests"] < 200  # stopped dispatching, did not pay for 3000 rows


def test_closed_standard_streams_never_give_a_traceback(fake: FakeAPI, tmp_path: Path) -> None:
    make_input(tmp_path, 3)
    cases = {
        f"{GEMBULK} run in.csv -t '{{text}}' >&-": (2, "stdout is closed: give -o FILE"),
        f"{GEMBULK} run in.csv -t '{{text}}' -o out.jsonl >&-": (0, ""),
        f"{GEMBULK} run - --input-format csv -t '{{text}}' -o x.jsonl <&-": (2, "stdin is closed"),
        f"{GEMBULK} run in.csv -t '{{text}}' 2>&- | wc -l": (0, ""),
        f"{GEMBULK} run nope.csv -t '{{text}}' 2>&-": (2, ""),
    }
    for command, (code, message) in cases.items():
        result = bash(command, fake.url, tmp_path)
        assert result.returncode == code, (command, result.stderr)
        assert message in result.stderr
        assert "Traceback" not in result.stderr + result.stdout and "internal error" not in result.stderr
        assert "error" not in result.stdout, command  # no message ever lands on stdout
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 3
    assert not (tmp_path / "x.jsonl").exists()


# -- 9. no litter ----------------------------------------------------------------------------------


def test_a_compaction_killed_midway_leaves_litter_the_next_run_removes(fake: FakeAPI, tmp_path: Path) -> None:
    n = 1500
    path = make_input(tmp_path, n)
    out = tmp_path / "out.jsonl"
    assert run_cli(run_args(path, out), fake.url).returncode == 0
    records = read_jsonl(out)
    padding = "p" * 20_000  # a big file, so its compaction takes long enough to be caught midway
    twice = [dict(r, pad=padding) for r in records] * 2
    out.write_text("".join(json.dumps(r) + "\n" for r in twice), encoding="utf-8")
    process = subprocess.Popen(
        [*gembulk_command(), *run_args(path, out)], env=cli_env(fake.url), stderr=subprocess.DEVNULL
    )
    litter: list[str] = []
    deadline = time.monotonic() + 30
    while process.poll() is None and time.monotonic() < deadline and not litter:
        litter = [name for name in os.listdir(tmp_path) if name.endswith(".gembulk-tmp")]
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    if not litter:
        pytest.skip("the compaction finished before it could be caught; the leftover rule is unit-tested")
    assert litter[0].startswith(".out.jsonl.")
    assert any(name.endswith(".gembulk-tmp") for name in os.listdir(tmp_path))
    result = run_cli(run_args(path, out), fake.url)
    assert result.returncode == 0, result.stderr
    assert "removed 1 temporary file(s)" in result.stderr
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".gembulk-tmp")]
    assert len(read_jsonl(out)) == n
    assert fake.stats()["generate_requests"] == n


def test_the_cache_is_created_private(fake: FakeAPI, tmp_path: Path) -> None:
    path = make_input(tmp_path, 1)
    cache = tmp_path / "c.sqlite"
    assert run_cli([*run_args(path, tmp_path / "out.jsonl"), "--cache", str(cache)], fake.url).returncode == 0
    assert cache.stat().st_mode & 0o777 == 0o600
