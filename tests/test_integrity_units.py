"""Unit tests of output integrity: the canonical request and its fingerprint, the record's reserved keys,
unsendable rows, the resume decision, the compaction choice, the output lifecycle, the lock, the target."""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from gembulk.cache import cache_key
from gembulk.client.request import request_json
from gembulk.errors import NotReadyError, OutputWriteError, UsageError
from gembulk.outputs import (
    CompactionPlan,
    OutputKind,
    Resume,
    RunOutput,
    check_output,
    compact,
    encoder_for,
    load_existing,
    output_lock,
    output_target,
    remove_leftovers,
)
from gembulk.outputs.lock import describe_holder, lock_path, scrubbed_command
from gembulk.outputs.resume import success_key
from gembulk.outputs.target import _leftover_of
from gembulk.prepare import EMPTY_PROMPT, MISSING_VALUE, unsendable
from gembulk.prompts import Template
from gembulk.records import Attachment, InputRow, Outcome, build_record
from gembulk.requestkey import FINGERPRINT_DIGITS, RequestDigests, fingerprint_of, request_digest
from gembulk.settings import GenerationSettings

MODEL = "gemini-2.5-flash"
SCHEMA = {"type": "object", "properties": {"label": {"type": "string"}}}


def record(record_id: str, *, fingerprint: str | None, ok: bool = True, **extra: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "response": "fine" if ok else None,
        "error": None if ok else {"code": 500, "status": "INTERNAL", "message": "x"},
        "model": MODEL,
        "fingerprint": fingerprint,
        **extra,
    }


def jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


# -- the canonical request -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        GenerationSettings(),
        GenerationSettings(system="be terse", temperature=0.2, max_output_tokens=64, json_schema=SCHEMA),
    ],
)
@pytest.mark.parametrize(
    "prompt",
    ["plain", "", 'quotes " and \\ backslash', "ünïcödé 漢字 🙂", "tab\tnewline\n\x00", "lone \ud800"],
)
def test_the_fast_digest_is_the_canonical_one(settings: GenerationSettings, prompt: str) -> None:
    digests = RequestDigests(settings, MODEL)
    expected = request_digest(MODEL, request_json(settings, prompt))
    assert digests.digest(prompt) == expected
    with_media = digests.digest(prompt, ["sha256:abc", "url:https://x/y.png"])
    assert with_media == request_digest(
        MODEL, request_json(settings, prompt), ["sha256:abc", "url:https://x/y.png"]
    )
    assert with_media != expected


def test_the_cache_key_is_the_request_digest_and_kept_its_old_value() -> None:
    request = request_json(GenerationSettings(system="s"), "hello")
    # the formula caches were written with before the canonical request had an owner: they still hit
    old = hashlib.sha256(
        json.dumps(
            {"model": MODEL, "request": request}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    ).hexdigest()
    assert cache_key("models/" + MODEL, request) == request_digest(MODEL, request) == old
    assert fingerprint_of(old) == old[:FINGERPRINT_DIGITS] and FINGERPRINT_DIGITS == 16


def test_every_part_of_the_request_changes_the_digest() -> None:
    base = RequestDigests(GenerationSettings(), MODEL).digest("p")
    variants = [
        RequestDigests(GenerationSettings(), "gemini-2.5-pro").digest("p"),
        RequestDigests(GenerationSettings(), MODEL).digest("q"),
        RequestDigests(GenerationSettings(system="s"), MODEL).digest("p"),
        RequestDigests(GenerationSettings(temperature=0.5), MODEL).digest("p"),
        RequestDigests(GenerationSettings(max_output_tokens=5), MODEL).digest("p"),
        RequestDigests(GenerationSettings(json_schema=SCHEMA), MODEL).digest("p"),
        RequestDigests(GenerationSettings(), MODEL).digest("p", ["sha256:x"]),
    ]
    assert len({base, *variants}) == len(variants) + 1


# -- records ---------------------------------------------------------------------------------------


def test_input_fields_named_like_record_keys_are_kept_under_input() -> None:
    row = InputRow(
        "r1", {"id": "r1", "response": "stage 1", "error": None, "usage": {"n": 1}, "text": "t"}, 2, 1
    )
    built = build_record(row, MODEL, Outcome("stage 2", None), fingerprint="ab" * 8, id_column="id")
    assert built["response"] == "stage 2" and built["fingerprint"] == "ab" * 8
    assert built["input"] == {"response": "stage 1", "error": None, "usage": {"n": 1}}
    assert built["text"] == "t" and "id" not in built["input"]  # the id column is the record's id
    other_id = build_record(row, MODEL, Outcome("x", None), id_column="text")
    assert other_id["input"]["id"] == "r1"  # not the id column: the input's own id is kept
    plain = build_record(InputRow("1", {"text": "t"}, 2, 1), MODEL, Outcome("x", None))
    assert "input" not in plain and plain["fingerprint"] is None


def test_rows_that_cannot_be_sent() -> None:
    template = Template.parse("Check {response} in {lang}")
    row = InputRow("1", {"response": None, "lang": "en"}, 2, 1)
    missing = unsendable(template, row, None, ())
    assert missing is not None and missing.status == MISSING_VALUE and "response" in missing.message
    absent = unsendable(template, InputRow("2", {"lang": "en"}, 3, 2), None, ())
    assert absent is not None and absent.status == MISSING_VALUE
    fine = InputRow("3", {"response": "x", "lang": "en"}, 4, 3)
    assert unsendable(template, fine, None, ()) is None
    blank = Template.parse("{text}")
    empty = unsendable(blank, InputRow("4", {"text": "  "}, 5, 4), "  ", ())
    assert empty is not None and empty.status == EMPTY_PROMPT
    image = Attachment("url", "https://x/y.png", "photo")
    assert unsendable(blank, InputRow("5", {"text": ""}, 6, 5), "", (image,)) is None


# -- resume and compaction -------------------------------------------------------------------------


async def test_resume_skips_exactly_the_matching_successes(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        jsonl(record("a", fingerprint="fa"), record("b", fingerprint="old"), record("gone", fingerprint="fg"))
    )
    resume = Resume(await load_existing(str(path), "jsonl"))
    assert resume.done("a", MODEL, "fa", counting=True)
    assert not resume.done("b", MODEL, "new", counting=True)  # edited: sent again
    resume.sending("b", MODEL, counting=True)
    resume.sending("c", MODEL, counting=True)  # new row
    assert resume.needs_compaction  # b's new record supersedes the old one
    assert resume.left_alone == 1  # "gone" is not in this job: kept, and counted
    resume.release()  # the digests go before a compaction; what the end of the run needs stays
    assert resume.needs_compaction and resume.left_alone == 1
    fresh = Resume(await load_existing(str(path), "jsonl"))
    assert fresh.done("a", MODEL, "fa", counting=True) and not fresh.needs_compaction


async def test_compaction_keeps_the_success_the_run_resumed_from(tmp_path: Path) -> None:
    # success fp1, then a failure after an edit (fp2), then the edit undone: the fp1 success is kept
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        jsonl(
            record("1", fingerprint="fp1", answer=1),
            record("1", fingerprint="fp2", ok=False),
            record("2", fingerprint="x", answer=2),
            record("2", fingerprint="y", answer=3),
            record("other", fingerprint="o", ok=False),
            record("other", fingerprint="o", answer=4),
        )
    )
    resume = Resume(await load_existing(str(path), "jsonl"))
    assert resume.done("1", MODEL, "fp1", counting=True)
    assert resume.current == {success_key("1", MODEL, "fp1")}
    boundary = path.stat().st_size
    with path.open("ab") as handle:  # this run's record for row 2
        handle.write(jsonl(record("2", fingerprint="z", ok=False, answer=5)))
    assert await compact(str(path), "jsonl", CompactionPlan(boundary, resume.current)) == 3
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["id"], r["fingerprint"], r.get("answer")) for r in kept] == [
        ("1", "fp1", 1),  # resumed from, though a failure followed it
        ("2", "z", 5),  # written by this run: it wins, even as a failure
        ("other", "o", 4),  # not in this job: its best record stays
    ]


# -- the output of a run ---------------------------------------------------------------------------


def run_output(path: Path, *, existing: Any = None, overwrite: bool = False, fmt: str = "jsonl") -> RunOutput:
    return RunOutput(output_target(str(path)), encoder_for(fmt, ["text"], False, "id"), existing, overwrite)


async def test_a_run_that_writes_nothing_and_stops_creates_nothing(tmp_path: Path) -> None:
    out = run_output(tmp_path / "out.jsonl")
    await out.close()
    await out.discard()
    assert list(tmp_path.iterdir()) == []


async def test_a_completed_run_with_nothing_to_write_leaves_an_output(tmp_path: Path) -> None:
    out = run_output(tmp_path / "out.csv", fmt="csv")
    await out.finish()
    assert (tmp_path / "out.csv").read_text().startswith("id,response,")


async def test_append_cuts_a_torn_tail_first(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    good = jsonl(record("1", fingerprint="a"))
    path.write_bytes(good + b'{"id":"2","resp')
    out = run_output(path, existing=await load_existing(str(path), "jsonl"))
    await out.write(record("2", fingerprint="b"))
    await out.finish()
    assert out.boundary == len(good)
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["1", "2"]


async def test_overwrite_replaces_the_old_output_only_once_a_record_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old precious bytes\n")
    path.chmod(0o640)
    stopped = run_output(path, overwrite=True)
    await stopped.close()
    await stopped.discard()
    assert path.read_bytes() == b"old precious bytes\n"
    out = run_output(path, overwrite=True)
    await out.write(record("1", fingerprint="a"))
    await out.write(record("2", fingerprint="b"))
    await out.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["1", "2"]
    assert path.stat().st_mode & 0o777 == 0o640  # the replaced output keeps its mode
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


async def test_overwrite_with_nothing_to_write_replaces_at_a_clean_finish(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b"old\n")
    out = run_output(path, overwrite=True)
    await out.finish()
    await out.discard()
    assert path.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_a_write_error_is_a_one_line_error_naming_the_output() -> None:
    out = RunOutput(output_target("/dev/full"), encoder_for("jsonl", [], False), None, False)
    with pytest.raises(OutputWriteError) as raised:
        for _ in range(100):
            await out.write(record("1", fingerprint="a"))
            await asyncio.sleep(0.01)
    assert raised.value.exit_code == 3
    assert raised.value.message == "cannot write /dev/full: No space left on device"
    await out.discard()


async def test_a_fifo_is_written_as_a_stream_once_its_reader_opens_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert output_target(str(fifo)).kind is OutputKind.STREAM
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    out = run_output(fifo)
    opening = asyncio.create_task(out.write(record("1", fingerprint="a")))
    await asyncio.sleep(0.2)
    assert not opening.done()  # waiting for a reader, without a thread stuck in open()
    reader.start()
    await opening
    await out.finish()
    await asyncio.to_thread(reader.join, 10)
    assert json.loads(received[0])["id"] == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]  # no lock, no temp file beside a stream


# -- the lock --------------------------------------------------------------------------------------


def test_the_lock_admits_one_gembulk_per_output_and_names_the_holder(tmp_path: Path) -> None:
    out = str(tmp_path / "out.jsonl")
    holder = ["gembulk", "run", "in.csv", "-o", out, "--api-key", "SECRET-KEY", "--api-key=SECRET2"]
    with output_lock(out, argv=holder):
        with pytest.raises(NotReadyError) as raised, output_lock(out):
            pass
        message = raised.value.message
        assert raised.value.exit_code == 4
        assert message.startswith(f"{out} is being written by another gembulk (pid {os.getpid()}, since ")
        assert "gembulk run in.csv -o" in message and "SECRET" not in message
        assert os.stat(lock_path(out)).st_mode & 0o777 == 0o600
    assert not os.path.exists(lock_path(out))  # removed by its holder
    with output_lock(out):  # released
        pass


def test_scrubbed_command_and_holder_description() -> None:
    assert scrubbed_command(["/x/gembulk", "run", "a b.csv", "--api-key", "K", "--api-key-file", "f"]) == (
        "gembulk run 'a b.csv' --api-key '***' --api-key-file f"
    )
    assert describe_holder(b"", 0.0) == ""
    assert describe_holder(b'{"pid": 7, "started": 0, "command": "gembulk run x"}', 0.0).startswith(
        "pid 7, since"
    )


def _hold_lock_forever(out: str, ready: Any) -> None:
    with output_lock(out):
        ready.set()
        signal.pause()


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path: Path) -> None:
    out = str(tmp_path / "out.jsonl")
    Path(lock_path(out)).write_text("junk from a crash")  # a leftover lock file, nobody holding it
    with output_lock(out):
        pass
    context = multiprocessing.get_context("fork")
    ready = context.Event()
    process = context.Process(target=_hold_lock_forever, args=(out, ready))
    process.start()
    try:
        assert ready.wait(10)
        with pytest.raises(NotReadyError), output_lock(out):
            pass
    finally:
        process.kill()  # SIGKILL: the kernel drops the lock
        process.join(10)
    assert os.path.exists(lock_path(out))  # left behind by the killed holder ...
    with output_lock(out):  # ... and no obstacle
        pass


# -- what -o names ---------------------------------------------------------------------------------


def test_output_targets(tmp_path: Path) -> None:
    (tmp_path / "file.jsonl").write_text("")
    os.mkfifo(tmp_path / "fifo")
    assert output_target("-").kind is OutputKind.STDOUT
    assert output_target("/dev/null").kind is OutputKind.STREAM
    assert output_target("/dev/stdout").kind is OutputKind.STREAM  # whatever it points at
    assert output_target("/dev/fd/63").kind is OutputKind.STREAM
    assert output_target(str(tmp_path / "fifo")).kind is OutputKind.STREAM
    assert output_target(str(tmp_path / "file.jsonl")).kind is OutputKind.FILE
    assert output_target(str(tmp_path / "new.jsonl")).kind is OutputKind.FILE


def test_outputs_that_cannot_be_written_are_refused_before_anything(tmp_path: Path) -> None:
    cases = {
        str(tmp_path / "nowhere" / "out.jsonl"): "does not exist",
        str(tmp_path): "is a directory",
        "/dev/no-such-device": "no such file",
    }
    for path, reason in cases.items():
        with pytest.raises(UsageError, match=reason):
            check_output(output_target(path))
    if os.geteuid() != 0:  # root writes anywhere: the CLI tests use a read-only mount instead
        locked = tmp_path / "ro"
        locked.mkdir(mode=0o500)
        with pytest.raises(UsageError, match="not writable"):
            check_output(output_target(str(locked / "out.jsonl")))


def test_leftovers_are_told_apart_by_output_name(tmp_path: Path) -> None:
    assert _leftover_of(".out.jsonl.a1b2c3d4e5f6.gembulk-tmp", "out.jsonl")
    assert _leftover_of(".out.jsonl.k_3j4h5g.gembulk-tmp", "out.jsonl")
    assert not _leftover_of(".out.jsonl.x.a1b2c3.gembulk-tmp", "out.jsonl")  # out.jsonl.x's
    assert not _leftover_of(".out.a1b2c3.gembulk-tmp", "out.jsonl")
    assert not _leftover_of("out.jsonl.gembulk-tmp", "out.jsonl")
    mine = [".out.jsonl.aaaa1111.gembulk-tmp", ".out.jsonl.bbbb2222.gembulk-tmp"]
    others = [".out.jsonl.x.cccc3333.gembulk-tmp", "out.jsonl", "notes.txt"]
    for name in mine + others:
        (tmp_path / name).write_text("x")
    (tmp_path / ".out.jsonl.dddd4444.gembulk-tmp").mkdir()  # a batch scratch folder
    (tmp_path / ".out.jsonl.dddd4444.gembulk-tmp" / "part-0001.jsonl").write_text("x")
    assert remove_leftovers(str(tmp_path / "out.jsonl")) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)
