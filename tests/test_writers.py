"""Tests for gembulk.outputs: output formats, batching and durability, resume state and compaction."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import stat
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gembulk.errors import InputError, OutputConflictError, UsageError
from gembulk.outputs import (
    CSV_BASE_COLUMNS,
    OutputClosedError,
    compact,
    count_outcomes,
    csv_columns,
    csv_row_to_record,
    detect_output_format,
    load_existing,
    open_writer,
    record_to_csv_row,
    scanner,
    sinks,
)
from gembulk.outputs.resume import record_key

USAGE = {
    "prompt_tokens": 10,
    "output_tokens": 5,
    "thoughts_tokens": 2,
    "total_tokens": 17,
    "cached_tokens": 0,
}


def ok(record_id: str, response: str = "fine", **extra: Any) -> dict[str, Any]:
    record = {
        "id": record_id,
        "response": response,
        "error": None,
        "finish_reason": "STOP",
        "usage": USAGE,
        "model": "gemini-2.5-flash",
    }
    record.update(extra)
    return record


def failed(record_id: str, code: int | None = 429, **extra: Any) -> dict[str, Any]:
    record = {
        "id": record_id,
        "response": None,
        "error": {"code": code, "status": "RESOURCE_EXHAUSTED", "message": "quota, try later"},
        "finish_reason": None,
        "usage": None,
        "model": "gemini-2.5-flash",
    }
    record.update(extra)
    return record


def jsonl_bytes(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


async def write_file(path: Path, fmt: str, records: list[dict[str, Any]], input_columns: tuple = ()) -> None:
    writer = await open_writer(str(path), fmt, input_columns, with_parsed=False, append=False, id_column="id")
    for record in records:
        await writer.write(record)
    await writer.aclose()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def file_bytes(path: Path) -> bytes:
    return path.read_bytes()


def temp_leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".gembulk-tmp")]


# --------------------------------------------------------------------------------------------------
# Format detection and CSV layout


@pytest.mark.parametrize(
    ("path", "explicit", "expected"),
    [
        ("out.csv", None, "csv"),
        ("OUT.CSV", None, "csv"),
        ("out.jsonl", None, "jsonl"),
        ("out.ndjson", None, "jsonl"),
        ("out.json", None, "jsonl"),
        ("out.txt", None, "jsonl"),
        ("-", None, "jsonl"),
        ("out.csv", "jsonl", "jsonl"),
        ("-", "csv", "csv"),
    ],
)
def test_detect_output_format(path: str, explicit: str | None, expected: str) -> None:
    assert detect_output_format(path, explicit) == expected


def test_detect_output_format_bad_explicit() -> None:
    with pytest.raises(UsageError, match="unknown output format 'xml'"):
        detect_output_format("out.csv", "xml")


def test_csv_columns_layout() -> None:
    # the id column is the record's id; an input column named like a result column is kept as input.NAME
    assert csv_columns(["id", "text", "model", "lang", "text", "error_code"], True, id_column="id") == (
        *CSV_BASE_COLUMNS,
        "parsed",
        "fingerprint",
        "text",
        "input.model",
        "lang",
        "input.error_code",
    )
    assert csv_columns(["q"], with_parsed=False) == (*CSV_BASE_COLUMNS, "fingerprint", "q")
    assert csv_columns(["id", "q"], with_parsed=False, id_column="q")[-3:] == ("fingerprint", "input.id", "q")


def test_input_columns_named_like_result_columns_round_trip() -> None:
    columns = csv_columns(["q", "response", "error_code"], with_parsed=False)
    record = ok("1", "new", fingerprint="ab" * 8, q="x", error_code="7", input={"response": "old"})
    row = dict(zip(columns, record_to_csv_row(record, columns), strict=True))
    assert (row["response"], row["input.response"], row["input.error_code"]) == ("new", "old", "7")
    back = csv_row_to_record(row)
    assert (back["input"], back["error_code"], back["fingerprint"]) == ({"response": "old"}, "7", "ab" * 8)


def test_record_to_csv_row_cells() -> None:
    columns = csv_columns(["text", "n", "meta", "missing"], with_parsed=True)
    record = ok("7", "multi\nline", text="a,b", n=3, meta={"k": "ü"}, parsed={"score": 0.5})
    row = dict(zip(columns, record_to_csv_row(record, columns), strict=True))
    assert row == {
        "id": "7",
        "response": "multi\nline",
        "error_code": "",
        "error_status": "",
        "error_message": "",
        "finish_reason": "STOP",
        "prompt_tokens": "10",
        "output_tokens": "5",
        "thoughts_tokens": "2",
        "total_tokens": "17",
        "cached_tokens": "0",
        "model": "gemini-2.5-flash",
        "parsed": '{"score":0.5}',
        "fingerprint": "",
        "text": "a,b",
        "n": "3",
        "meta": '{"k":"ü"}',
        "missing": "",
    }


def test_failure_never_reads_back_as_success() -> None:
    columns = csv_columns([], with_parsed=False)
    record = {"id": "1", "response": None, "error": {"code": None, "status": "", "message": ""}}
    row = dict(zip(columns, record_to_csv_row(record, columns), strict=True))
    assert row["error_status"] == "ERROR"
    assert csv_row_to_record(row)["error"] == {"code": None, "status": "ERROR", "message": ""}


@pytest.mark.parametrize(
    "record",
    [
        ok("1", 'line one\r\nline two, with "quotes"', lang="en", n="4", parsed=["a", 1], fingerprint="f1"),
        ok("2", "", lang="", n="", parsed="12", fingerprint="f2"),
        failed("3", lang="fr", n="x", parsed=None, fingerprint=None),
        failed("4", code=None, lang="de", n="0", parsed=None, fingerprint="f4"),
    ],
)
async def test_csv_round_trip(tmp_path: Path, record: dict[str, Any]) -> None:
    path = tmp_path / "out.csv"
    writer = await open_writer(str(path), "csv", ["lang", "n"], with_parsed=True, append=False)
    await writer.write(record)
    await writer.aclose()
    [row] = read_csv(path)
    back = csv_row_to_record(row)
    for key in (
        "id",
        "response",
        "error",
        "usage",
        "model",
        "finish_reason",
        "parsed",
        "fingerprint",
        "lang",
        "n",
    ):
        assert back[key] == record[key], key


async def test_csv_carries_cached_tokens_and_reads_them_back(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    record = {**ok("1", lang="en", n="4"), "usage": {**USAGE, "cached_tokens": 9}}
    writer = await open_writer(str(path), "csv", ["lang", "n"], with_parsed=False, append=False)
    await writer.write(record)
    await writer.aclose()
    header = path.read_text(encoding="utf-8").splitlines()[0].split(",")
    assert header == [*CSV_BASE_COLUMNS, "fingerprint", "lang", "n"] and "cached_tokens" in CSV_BASE_COLUMNS
    [row] = read_csv(path)
    back = csv_row_to_record(row)
    assert back["usage"] == {**USAGE, "cached_tokens": 9} and "cached_tokens" not in back
    assert (back["lang"], back["n"]) == ("en", "4")


# --------------------------------------------------------------------------------------------------
# Writing


async def test_jsonl_writer(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    records = [ok("1", "héllo\nworld", parsed={"a": [1, 2]}, mode="batch", cached=True), failed("2")]
    await write_file(path, "jsonl", records)
    raw = path.read_bytes()
    assert raw.count(b"\n") == 2
    assert "héllo".encode() in raw  # not \u-escaped
    assert b'"id":"1","response"' in raw  # compact separators
    assert read_jsonl(path) == records


async def test_jsonl_writer_survives_lone_surrogates(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    await write_file(path, "jsonl", [ok("1", "bad \ud800 text"), ok("2")])
    assert [r["response"] for r in read_jsonl(path)] == ["bad \ud800 text", "fine"]


async def test_csv_writer(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    records = [ok("1", "a\r\nb", text='say "hi"'), failed("2", text="bare\rreturn")]
    await write_file(path, "csv", records, input_columns=("id", "text"))
    rows = read_csv(path)
    assert list(rows[0]) == [*CSV_BASE_COLUMNS, "fingerprint", "text"]
    assert [(r["id"], r["response"], r["error_code"], r["text"]) for r in rows] == [
        ("1", "a\r\nb", "", 'say "hi"'),
        ("2", "", "429", "bare\rreturn"),
    ]
    assert path.read_bytes().count(b"id,response,") == 1


async def test_stdout_writer(monkeypatch) -> None:
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=buffer, flush=lambda: None))
    writer = await open_writer("-", "jsonl", [], with_parsed=False, append=True)
    await writer.write(ok("1"))
    await writer.flush()
    assert json.loads(buffer.getvalue()) == ok("1")
    await writer.write(ok("2"))
    await writer.aclose()
    assert not buffer.closed
    assert [json.loads(line)["id"] for line in buffer.getvalue().splitlines()] == ["1", "2"]


async def test_stdout_csv_writes_header(monkeypatch) -> None:
    buffer = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=buffer, flush=lambda: None))
    writer = await open_writer("-", "csv", ["q"], with_parsed=False, append=False)
    await writer.write(ok("1", q="x"))
    await writer.aclose()
    lines = buffer.getvalue().decode().splitlines()
    assert lines[0] == ",".join((*CSV_BASE_COLUMNS, "fingerprint", "q"))
    assert lines[1].startswith("1,fine,")


class BrokenPipe(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")


async def test_stdout_broken_pipe_is_a_clean_error(monkeypatch) -> None:
    monkeypatch.setattr(sys, "stdout", SimpleNamespace(buffer=BrokenPipe(), flush=lambda: None))
    writer = await open_writer("-", "jsonl", [], with_parsed=False, append=False)
    await writer.write(ok("1"))
    with pytest.raises(OutputClosedError):
        await writer.flush()
    with pytest.raises(OutputClosedError):
        await writer.write(ok("2"))
    with pytest.raises(OutputClosedError):
        await writer.aclose()


async def test_append_keeps_records_and_skips_csv_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    await write_file(path, "csv", [ok("1", q="a")], input_columns=("q",))
    writer = await open_writer(str(path), "csv", ["q"], with_parsed=False, append=True)
    await writer.write(ok("2", q="b"))
    await writer.aclose()
    assert [r["id"] for r in read_csv(path)] == ["1", "2"]
    assert path.read_bytes().count(b"id,response,") == 1


async def test_append_to_missing_or_empty_csv_writes_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"")
    writer = await open_writer(str(path), "csv", [], with_parsed=False, append=True)
    await writer.write(ok("1"))
    await writer.aclose()
    assert [r["id"] for r in read_csv(path)] == ["1"]


async def test_append_csv_with_other_columns_is_a_conflict(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    await write_file(path, "csv", [ok("1", q="a")], input_columns=("q",))
    before = path.read_bytes()
    with pytest.raises(OutputConflictError, match="header does not match"):
        await open_writer(str(path), "csv", ["q", "lang"], with_parsed=False, append=True)
    assert path.read_bytes() == before


async def test_append_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    await write_file(path, "jsonl", [ok("1")])
    writer = await open_writer(str(path), "jsonl", [], with_parsed=False, append=True)
    await writer.write(ok("2"))
    await writer.aclose()
    assert [r["id"] for r in read_jsonl(path)] == ["1", "2"]


async def test_no_append_truncates(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_text("old content\n", encoding="utf-8")
    await write_file(path, "jsonl", [ok("1")])
    assert [r["id"] for r in read_jsonl(path)] == ["1"]


async def test_flush_makes_every_record_visible(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    writer = await open_writer(str(path), "jsonl", [], with_parsed=False, append=False)
    try:
        for i in range(500):
            await writer.write(ok(str(i)))
        await writer.flush()
        assert [r["id"] for r in read_jsonl(path)] == [str(i) for i in range(500)]
        await writer.write(ok("last"))
        await writer.flush()
        assert read_jsonl(path)[-1]["id"] == "last"
    finally:
        await writer.aclose()


async def test_idle_writes_go_out_without_flush(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    writer = await open_writer(str(path), "jsonl", [], with_parsed=False, append=False)
    try:
        await writer.write(ok("1"))
        for _ in range(200):  # the flusher runs as soon as the caller yields
            if path.read_bytes().endswith(b"\n"):
                break
            await asyncio.sleep(0.005)
        assert [r["id"] for r in read_jsonl(path)] == ["1"]
    finally:
        await writer.aclose()


async def test_writes_under_load_are_batched(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    writer = await open_writer(str(path), "jsonl", [], with_parsed=False, append=False)
    batches: list[int] = []
    original = writer._sink.write

    async def counting(data: bytes) -> None:
        batches.append(data.count(b"\n"))
        await original(data)

    writer._sink.write = counting  # type: ignore[method-assign]
    for i in range(1000):  # no await yields to the flusher in between
        await writer.write(ok(str(i)))
    await writer.flush()
    await writer.write(ok("idle"))
    await writer.flush()
    await writer.aclose()
    assert sum(batches) == 1001
    assert batches == [1000, 1]


async def test_fsync_on_close_and_at_most_once_per_interval(tmp_path: Path, monkeypatch) -> None:
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(sinks.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    monkeypatch.setattr(sinks, "SYNC_INTERVAL", 3600.0)
    path = tmp_path / "out.jsonl"
    writer = await open_writer(str(path), "jsonl", [], with_parsed=False, append=False)
    for i in range(5):
        await writer.write(ok(str(i)))
        await writer.flush()
    assert synced == []
    await writer.aclose()
    assert len(synced) == 1


async def test_fsync_while_writing_after_interval(tmp_path: Path, monkeypatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(sinks.os, "fsync", lambda fd: synced.append(fd))
    monkeypatch.setattr(sinks, "SYNC_INTERVAL", 0.0)
    writer = await open_writer(str(tmp_path / "o.jsonl"), "jsonl", [], with_parsed=False, append=False)
    await writer.write(ok("1"))
    await writer.flush()
    await asyncio.sleep(0.05)  # the sync follows the write in the flusher
    assert len(synced) >= 1
    await writer.aclose()


async def test_write_after_close(tmp_path: Path) -> None:
    writer = await open_writer(str(tmp_path / "o.jsonl"), "jsonl", [], with_parsed=False, append=False)
    await writer.aclose()
    await writer.aclose()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        await writer.write(ok("1"))


async def test_unserializable_record_fails_its_caller(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    writer = await open_writer(str(path), "jsonl", [], with_parsed=False, append=False)
    with pytest.raises(TypeError):
        await writer.write(ok("1", blob=object()))
    await writer.write(ok("2"))
    await writer.aclose()
    assert [r["id"] for r in read_jsonl(path)] == ["2"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
async def test_disk_full_raises_oserror() -> None:
    writer = await open_writer("/dev/full", "jsonl", [], with_parsed=False, append=False)
    await writer.write(ok("1"))
    with pytest.raises(OSError, match="No space left"):
        await writer.flush()
    with pytest.raises(OSError):
        await writer.aclose()


# --------------------------------------------------------------------------------------------------
# load_existing: JSONL (read only: a torn tail is found, and cut later by the writer that appends)

MODEL = "gemini-2.5-flash"


async def test_load_existing_missing_or_empty(tmp_path: Path) -> None:
    assert await load_existing(str(tmp_path / "nope.jsonl"), "jsonl") is None
    (tmp_path / "empty.jsonl").write_bytes(b"")
    assert await load_existing(str(tmp_path / "empty.jsonl"), "jsonl") is None


async def test_load_existing_keys_successes_by_fingerprint(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        jsonl_bytes(
            failed("1", fingerprint="f1"),
            ok("1", fingerprint="f1"),
            ok("2", fingerprint="f2"),
            failed("2", fingerprint="g2"),
            failed("3", fingerprint="f3"),
            ok("4"),  # written by an earlier version: no fingerprint, never matches
        )
    )
    state = await load_existing(str(path), "jsonl")
    assert state is not None
    assert state.has_success("1", MODEL, "f1") and state.has_success("2", MODEL, "f2")
    assert not state.has_success("2", MODEL, "g2") and not state.has_success("3", MODEL, "f3")
    assert not state.has_success("1", "gemini-2.5-pro", "f1")  # another model is another key
    assert len(state.succeeded) == 2
    assert state.keys == {record_key(i, MODEL) for i in "1234"}
    assert state.repeated == {record_key("1", MODEL), record_key("2", MODEL)}
    assert (state.records, state.torn, state.end) == (6, False, path.stat().st_size)


async def test_load_existing_clean_file_has_no_repeats(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(jsonl_bytes(ok("1"), failed("2")) + b"\n")  # a trailing blank line is harmless
    state = await load_existing(str(path), "jsonl")
    assert state is not None
    assert (state.records, state.torn, state.repeated) == (2, False, set())


@pytest.mark.parametrize(
    "tail",
    [
        b'{"id":"3","response":"hal',  # torn without its newline
        json.dumps(ok("3")).encode(),  # complete JSON, newline missing
        b"\x00\x00\x00\x00\n",  # garbage last line
    ],
)
async def test_load_existing_finds_a_torn_tail_and_leaves_the_file_alone(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "out.jsonl"
    good = jsonl_bytes(ok("1", fingerprint="a"), ok("2", fingerprint="b"))
    path.write_bytes(good + tail)
    state = await load_existing(str(path), "jsonl")
    assert state is not None
    assert (state.torn, state.records, state.end) == (True, 2, len(good))
    assert state.has_success("2", MODEL, "b")
    assert path.read_bytes() == good + tail  # nothing cut by reading: the writer cuts, under the lock


async def test_load_existing_torn_only_record(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"id":"1","resp')
    state = await load_existing(str(path), "jsonl")
    assert state is not None and (state.records, state.torn, state.end) == (0, True, 0)


async def test_load_existing_invalid_middle_line_leaves_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    content = jsonl_bytes(ok("1")) + b"{oops\n" + jsonl_bytes(ok("2")) + b'{"id":"3"'
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        await load_existing(str(path), "jsonl")
    assert info.value.message.startswith(f"{path}:2: not a gembulk record")
    assert path.read_bytes() == content


async def test_load_existing_json_that_is_not_a_record(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    content = jsonl_bytes(ok("1"), {"name": "someone else's data"})
    path.write_bytes(content)
    with pytest.raises(InputError, match=r":2: not a gembulk record"):
        await load_existing(str(path), "jsonl")
    assert path.read_bytes() == content


async def test_load_existing_foreign_text_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.jsonl"
    path.write_bytes(b"dear diary")
    with pytest.raises(InputError, match=r":1: not a gembulk record"):
        await load_existing(str(path), "jsonl")
    assert path.read_bytes() == b"dear diary"


# --------------------------------------------------------------------------------------------------
# load_existing: CSV


async def csv_output(path: Path, records: list[dict[str, Any]]) -> bytes:
    await write_file(path, "csv", records, input_columns=("text",))
    return file_bytes(path)


async def test_load_existing_csv(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    await csv_output(
        path,
        [
            failed("1", text="a", fingerprint="x"),
            ok("1", "x\ny", text="b", fingerprint="x"),
            failed("2", text='c"d', fingerprint="y"),
        ],
    )
    state = await load_existing(str(path), "csv")
    assert state is not None
    assert state.has_success("1", MODEL, "x") and not state.has_success("2", MODEL, "y")
    assert (state.records, state.torn, state.repeated) == (3, False, {record_key("1", MODEL)})
    assert state.header == (*CSV_BASE_COLUMNS, "fingerprint", "text")


async def test_load_existing_csv_torn_inside_quoted_multiline_field(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    good = await csv_output(path, [ok("1", "one\ntwo", text="t")])
    with path.open("ab") as handle:
        handle.write(b'2,"first line\r\nsecond line\r\n')  # the crash hit inside the quoted response
    state = await load_existing(str(path), "csv")
    assert state is not None
    assert (state.torn, state.records, state.end) == (True, 1, len(good))


async def test_load_existing_csv_torn_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    good = await csv_output(path, [ok("1", text="t")])
    path.write_bytes(good + b"2,fine,,,,STOP")
    state = await load_existing(str(path), "csv")
    assert state is not None and state.torn and state.records == 1 and state.end == len(good)


async def test_load_existing_csv_torn_header(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    path.write_bytes(b"id,response,error_co")
    state = await load_existing(str(path), "csv")
    assert state is not None
    assert (state.records, state.torn, state.end, state.header) == (0, True, 0, None)


async def test_load_existing_csv_foreign_header(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    content = b"id,prompt\n1,hello\n"
    path.write_bytes(content)
    with pytest.raises(InputError) as info:
        await load_existing(str(path), "csv")
    assert info.value.message.startswith(f"{path}:1: not a gembulk record")
    assert "header" in info.value.message
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'{"id":"1","error":null}\n', "jsonl"),
        (b"\n  {", "jsonl"),
        (",".join(CSV_BASE_COLUMNS).encode() + b",text\r\n1,x", "csv"),
        (b"id,resp", "csv"),  # a header torn by a crash
        (b"id,prompt\n1,hello\n", None),
        (b"dear diary", None),
        (b"", None),
    ],
)
def test_written_as_tells_the_format_from_the_first_bytes(head: bytes, expected: str | None) -> None:
    assert scanner.written_as(head) == expected


async def test_load_existing_in_the_other_format_names_the_format_and_touches_nothing(tmp_path: Path) -> None:
    jsonl = tmp_path / "out.csv"  # a JSONL output behind a .csv name
    jsonl.write_bytes(jsonl_bytes(ok("1")))
    with pytest.raises(InputError) as info:
        await load_existing(str(jsonl), "csv")
    assert info.value.message == f"{jsonl} was written as jsonl; pass --output-format jsonl or a new -o"
    csv_out = tmp_path / "out.jsonl"
    content = await csv_output(csv_out, [ok("1", text="t")])
    with pytest.raises(InputError, match="was written as csv; pass --output-format csv or a new -o"):
        await load_existing(str(csv_out), "jsonl")
    assert csv_out.read_bytes() == content


async def test_load_existing_csv_bad_middle_record(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    good = await csv_output(path, [ok("1", text="t")])
    content = (
        good
        + b"2,too,few\r\n"
        + (await csv_output(tmp_path / "other.csv", [ok("3", text="u")])).split(b"\r\n", 1)[1]
    )
    path.write_bytes(content)
    with pytest.raises(InputError, match=r":3: not a gembulk record"):
        await load_existing(str(path), "csv")
    assert path.read_bytes() == content


# --------------------------------------------------------------------------------------------------
# compact (without a plan: per key the last success, else the last record)


async def test_compact_jsonl_keeps_one_per_id_in_first_appearance_order(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    records = [
        failed("b", message_no=1),
        ok("a", "first a"),
        failed("c", message_no=2),
        ok("b", "b ok"),
        failed("b", message_no=3),
        failed("c", message_no=4),
        ok("a", "second a"),
        ok("d"),
    ]
    path.write_bytes(jsonl_bytes(*records))
    assert await compact(str(path), "jsonl") == 4
    kept = read_jsonl(path)
    assert [r["id"] for r in kept] == ["b", "a", "c", "d"]
    assert kept[0]["response"] == "b ok"  # the success, though a failure came later
    assert kept[1]["response"] == "second a"  # the last success
    assert kept[2]["message_no"] == 4  # no success: the last record
    assert temp_leftovers(tmp_path) == []
    state = await load_existing(str(path), "jsonl")
    assert state is not None and not state.repeated


async def test_compact_csv_keeps_header_and_multiline_records(tmp_path: Path) -> None:
    path = tmp_path / "out.csv"
    await csv_output(
        path,
        [failed("1", text="x\ny"), ok("2", "two\r\nlines", text='q"q'), ok("1", "one\nok", text="x\ny")],
    )
    assert await compact(str(path), "csv") == 2
    rows = read_csv(path)
    assert [(r["id"], r["response"], r["text"]) for r in rows] == [
        ("1", "one\nok", "x\ny"),
        ("2", "two\r\nlines", 'q"q'),
    ]
    assert path.read_bytes().count(b"id,response,") == 1


async def test_compact_drops_a_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(jsonl_bytes(ok("1"), ok("1")) + b'{"id":"2"')
    assert await compact(str(path), "jsonl") == 1
    assert path.read_bytes() == jsonl_bytes(ok("1"))


async def test_compact_is_atomic_when_replace_fails(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "out.jsonl"
    content = jsonl_bytes(failed("1"), ok("1"), ok("2"))
    path.write_bytes(content)
    seen: list[tuple[str, str]] = []

    def failing_replace(src: str, dst: str) -> None:
        seen.append((src, dst))
        assert Path(src).parent == tmp_path  # the temp file is beside the output
        assert Path(src).name.startswith(".out.jsonl.")  # named so the next run removes it if killed
        assert Path(src).read_bytes() == jsonl_bytes(ok("1"), ok("2"))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="No space left"):
        await compact(str(path), "jsonl")
    assert len(seen) == 1 and seen[0][1] == str(path)
    assert path.read_bytes() == content
    assert temp_leftovers(tmp_path) == []


async def test_compact_refuses_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    content = jsonl_bytes(ok("1")) + b"not json\n" + jsonl_bytes(ok("2"))
    path.write_bytes(content)
    with pytest.raises(InputError):
        await compact(str(path), "jsonl")
    assert path.read_bytes() == content
    assert temp_leftovers(tmp_path) == []


async def test_compact_keeps_file_mode(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(jsonl_bytes(ok("1"), ok("1")))
    path.chmod(0o640)
    await compact(str(path), "jsonl")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


async def test_large_output_resume_and_compact(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(scanner, "CHUNK_SIZE", 4096)  # many chunk boundaries, lines split across them
    path = tmp_path / "out.jsonl"
    records = [
        failed(str(i)) if i % 10 == 0 else ok(str(i), "r" * (i % 97), fingerprint=f"f{i}")
        for i in range(20_000)
    ]
    records += [ok(str(i), fingerprint=f"f{i}") for i in range(0, 20_000, 20)]
    await write_file(path, "jsonl", records)
    state = await load_existing(str(path), "jsonl")
    assert state is not None
    assert state.records == 21_000 and len(state.keys) == 20_000 and len(state.repeated) == 1_000
    assert len(state.succeeded) == 19_000
    assert await count_outcomes(str(path), "jsonl") == (19_000, 1_000)
    assert await compact(str(path), "jsonl") == 20_000
    assert [r["id"] for r in read_jsonl(path)] == [str(i) for i in range(20_000)]


async def test_records_are_keyed_by_id_and_model(tmp_path: Path) -> None:
    # fan-out (-m a -m b): one id has a record per model; they are not duplicates of each other
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        jsonl_bytes(
            ok("1", model="a", fingerprint="x"),
            ok("1", model="b", fingerprint="x"),
            failed("2", model="a"),
            ok("2", model="a", fingerprint="y"),
        )
    )
    state = await load_existing(str(path), "jsonl")
    assert state is not None
    assert state.has_success("1", "a", "x") and state.has_success("1", "b", "x")
    assert state.repeated == {record_key("2", "a")}
    assert await compact(str(path), "jsonl") == 3
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["id"], r["model"], r["error"]) for r in kept] == [
        ("1", "a", None),
        ("1", "b", None),
        ("2", "a", None),
    ]
