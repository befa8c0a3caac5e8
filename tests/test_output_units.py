"""Units of the output formats and order: the reorder buffer, the held records beside OUT, compressed members
read back (torn, zero-filled, corrupt), compaction in input order, Parquet conversion and its way back."""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import zstandard

from gembulk.errors import InputError, UsageError
from gembulk.outputs import (
    CompactionPlan,
    RunOutput,
    compact,
    csv_columns,
    detect_output_format,
    encoder_for,
    load_existing,
    output_target,
    parquet,
    remove_leftovers,
)
from gembulk.outputs import compression as compression_module
from gembulk.outputs import held as held_module
from gembulk.outputs.compression import complete_end, decompress_to, member, output_compression
from gembulk.outputs.reorder import ReorderBuffer
from gembulk.outputs.resume import record_key
from gembulk.outputs.target import held_path

MODEL = "gemini-2.5-flash"


def record(record_id: str, *, ok: bool = True, fingerprint: str | None = "f", **extra: Any) -> dict[str, Any]:
    return {
        "id": record_id,
        "response": f"answer {record_id}" if ok else None,
        "error": None if ok else {"code": 500, "status": "INTERNAL", "message": "x"},
        "finish_reason": "STOP" if ok else None,
        "usage": {
            "prompt_tokens": 2,
            "output_tokens": 3,
            "thoughts_tokens": 0,
            "total_tokens": 5,
            "cached_tokens": 0,
        }
        if ok
        else None,
        "model": MODEL,
        "fingerprint": fingerprint,
        **extra,
    }


def jsonl(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def ids_in(data: bytes) -> list[str]:
    return [json.loads(line)["id"] for line in data.splitlines()]


# -- the reorder buffer -------------------------------------------------------------------------------------


async def test_the_reorder_buffer_writes_in_sequence_and_holds_what_comes_early() -> None:
    written: list[str] = []
    held: list[str] = []

    async def write(item: str) -> None:
        written.append(item)

    async def hold(item: str) -> None:
        held.append(item)

    buffer = ReorderBuffer(3, write, hold)
    for seq, item in ((2, "c"), (1, "b"), (0, "a"), (4, "e")):
        await buffer.put(seq, item)
    assert written == ["a", "b", "c"] and held == ["c", "b", "e"] and buffer.held == 1
    assert buffer.admits(5) and not buffer.admits(6)  # next is 3: 3, 4, 5 fit in 3
    await buffer.drain()  # a stopped run: what is held goes out past the gap (3)
    assert written == ["a", "b", "c", "e"] and buffer.out_of_order


async def test_the_request_pass_waits_for_room_until_the_slow_record_comes_or_the_run_stops() -> None:
    async def write(item: str) -> None:
        pass

    buffer = ReorderBuffer(2, write)
    await buffer.put(1, "b")
    waiting = asyncio.create_task(buffer.wait(2))  # 0 is outstanding: 2 would be a third record
    await asyncio.sleep(0)
    assert not waiting.done()
    await buffer.put(0, "a")
    await asyncio.wait_for(waiting, 1)
    stopped = asyncio.create_task(buffer.wait(10))
    await asyncio.sleep(0)
    assert not stopped.done()
    buffer.open()  # dispatching stopped: the pass goes on, to find that out
    await asyncio.wait_for(stopped, 1)


# -- held records beside OUT, and --overwrite ------------------------------------------------------------


def run_output(
    path: Path, *, existing: Any = None, overwrite: bool = False, keep_order: int = 10
) -> RunOutput:
    encoder = encoder_for("jsonl", ["text"], False, "id")
    return RunOutput(output_target(str(path)), encoder, existing, overwrite, keep_order=keep_order)


async def test_held_records_are_kept_beside_out_until_written_and_folded_in_by_the_next_run(
    tmp_path: Path,
) -> None:
    path = tmp_path / "out.jsonl"
    held = Path(held_path(str(path)))
    first = run_output(path)
    await first.write(record("1"), 0)
    await first.write(record("3"), 2)
    await first.write(record("4"), 3)
    await asyncio.sleep(0.05)  # the writers' flush loops run: what a kill -9 now leaves
    assert ids_in(path.read_bytes()) == ["1"] and ids_in(held.read_bytes()) == ["3", "4"]
    assert held.stat().st_mode & 0o777 == 0o600
    await first._writer.aclose()  # type: ignore[union-attr]  # (the process dies; nothing more runs)

    existing = await load_existing(str(path), "jsonl")
    assert existing is not None and existing.records == 3 and existing.has_success("4", MODEL, "f")
    second = run_output(path, existing=existing)
    await second.write(record("2"), 0)
    await second.finish()
    assert ids_in(path.read_bytes()) == ["1", "3", "4", "2"] and not held.exists()
    assert second.boundary == path.read_bytes().index(b'{"id":"2"')  # the held ones count as before


async def test_a_stopped_run_writes_what_it_held_and_removes_the_held_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    out = run_output(path)
    await out.write(record("2"), 1)
    await out.write(record("3"), 2)
    await out.close()
    await out.discard()
    assert ids_in(path.read_bytes()) == ["2", "3"] and not Path(held_path(str(path))).exists()
    assert not out.in_order


async def test_overwrite_replaces_out_before_holding_and_drops_the_old_held_file(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    held = Path(held_path(str(path)))
    path.write_bytes(b"old precious bytes\n")
    held.write_bytes(jsonl(record("old")))
    out = run_output(path, overwrite=True)
    await out.write(record("2"), 1)  # held: OUT is replaced first (empty), the old held file goes with it
    assert path.read_bytes() == b""
    await asyncio.sleep(0.05)
    assert ids_in(held.read_bytes()) == ["2"]
    await out.write(record("1"), 0)
    await out.finish()
    assert ids_in(path.read_bytes()) == ["1", "2"] and not held.exists() and out.in_order


async def test_the_held_file_starts_afresh_once_everything_in_it_is_in_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(held_module, "ROTATE_RECORDS", 2)
    path = tmp_path / "out.jsonl"
    held = Path(held_path(str(path)))
    out = run_output(path)
    await out.write(record("2"), 1)
    await out.write(record("3"), 2)
    await out.write(record("1"), 0)  # 2 and 3 follow it into OUT: nothing is held, the file goes
    assert not held.exists() and ids_in(path.read_bytes()) == ["1", "2", "3"]
    await out.write(record("5"), 4)
    await asyncio.sleep(0.05)
    assert ids_in(held.read_bytes()) == ["5"]
    await out.write(record("4"), 3)
    await out.finish()
    assert ids_in(path.read_bytes()) == ["1", "2", "3", "4", "5"] and not held.exists()


# -- compressed outputs --------------------------------------------------------------------------------------


def test_output_names_say_format_and_compression() -> None:
    assert [detect_output_format(p, None) for p in ("a.csv.gz", "a.jsonl.zst", "a.parquet", "a.gz", "-")] == [
        "csv",
        "jsonl",
        "parquet",
        "jsonl",
        "jsonl",
    ]
    assert [output_compression(p) for p in ("a.csv.GZ", "a.zstd", "a.csv", "-")] == [
        "gzip",
        "zstd",
        None,
        None,
    ]


@pytest.mark.parametrize("kind", ["gzip", "zstd"])
def test_complete_members_end_where_a_torn_or_zeroed_tail_starts(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "out"
    whole = member(kind, b"a\n") + member(kind, b"b\nc\n", fast=True)
    torn = member(kind, b"d\n" * 100)
    path.write_bytes(whole + torn[: len(torn) // 2])
    assert complete_end(str(path), kind) == len(whole)
    path.write_bytes(whole + b"\0" * 4096)  # a power cut after the write: zeros, dropped too
    assert complete_end(str(path), kind) == len(whole)
    path.write_bytes(whole + b"garbage that is no member" + member(kind, b"e\n"))
    with pytest.raises(InputError, match="corrupt"):
        complete_end(str(path), kind)  # never cut what is not a torn write of ours
    path.write_bytes(whole)
    with (tmp_path / "plain").open("wb") as plain:
        boundaries = decompress_to(str(path), kind, len(whole), plain)
    assert (tmp_path / "plain").read_bytes() == b"a\nb\nc\n"
    assert boundaries == {0: 0, len(member(kind, b"a\n")): 2, len(whole): 6}


async def test_a_torn_compressed_output_resumes_and_compacts_as_one_stream(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl.gz"
    first = member("gzip", jsonl(record("1"), record("2", ok=False)))
    second = member("gzip", jsonl(record("2")))
    path.write_bytes(first + second + member("gzip", jsonl(record("3")))[:9])
    existing = await load_existing(str(path), "jsonl", "gzip")
    assert existing is not None and existing.torn and existing.end == len(first) + len(second)
    assert existing.records == 3 and existing.has_success("2", MODEL, "f")
    with path.open("r+b") as handle:
        handle.truncate(existing.end)
    plan = CompactionPlan(boundary=len(first))
    order = _keys(["2", "1"])
    assert await compact(str(path), "jsonl", plan, compression="gzip", order=order, rewrite=True) == 2
    data = path.read_bytes()
    assert ids_in(gzip.decompress(data)) == ["2", "1"]
    assert json.loads(gzip.decompress(data).splitlines()[0])["error"] is None  # this run's record kept
    assert complete_end(str(path), "gzip") == len(data)


async def _keys(record_ids: list[str]) -> Any:
    for record_id in record_ids:
        yield record_key(record_id, MODEL)


async def test_compaction_leaves_a_file_already_in_order_alone(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(jsonl(record("1"), record("2")))
    before = path.stat().st_ino
    assert await compact(str(path), "jsonl", order=_keys(["1", "2"])) == 2
    assert path.stat().st_ino == before  # not rewritten
    assert await compact(str(path), "jsonl", order=_keys(["2", "1"])) == 2
    assert ids_in(path.read_bytes()) == ["2", "1"]


def test_missing_packages_are_named_with_their_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("zstandard", "compression", "pyarrow", "pyarrow.parquet"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UsageError, match=r"gembulk\[zstd\]"):
        compression_module.check_available("zstd")
    compression_module.check_available("gzip")  # the standard library's
    with pytest.raises(UsageError, match=r"gembulk\[parquet\]"):
        parquet.check_available()


# -- Parquet ------------------------------------------------------------------------------------------------


def test_parquet_converts_in_row_groups_and_reads_back_the_same_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet, "ROW_GROUP_ROWS", 2)
    records = [
        record("a", n=1, tags=["x"], input={"model": "m0"}, error_code="kept as input"),
        record("b", ok=False, n=2.5, tags=None),
        record("c", n=None, tags={"k": 1}, extra="only here"),
    ]
    source = tmp_path / "records.jsonl"
    source.write_bytes(jsonl(*records))
    out = tmp_path / "out.parquet"
    columns = csv_columns(["id", "n", "tags", "model", "error_code"], False, "id")
    assert parquet.convert(str(source), str(out), columns) == 3
    table = pq.read_table(out)
    assert pq.ParquetFile(out).num_row_groups == 2
    types = {field.name: str(field.type) for field in table.schema}
    assert types["n"] == "double" and types["tags"] == "string" and types["total_tokens"] == "int64"
    assert types["extra"] == "string" and "input.model" in types and "input.error_code" in types
    with (tmp_path / "back.jsonl").open("wb") as back:
        parquet.write_records(str(out), back)
    again = [json.loads(line) for line in (tmp_path / "back.jsonl").read_bytes().splitlines()]
    assert again[0]["tags"] == ["x"] and again[0]["input"] == {"model": "m0"}
    assert again[0]["error_code"] == "kept as input" and again[2]["tags"] == {"k": 1}
    assert (
        again[1]["error"] == {"code": 500, "status": "INTERNAL", "message": "x"} and again[1]["usage"] is None
    )
    assert again[2]["extra"] == "only here" and again[2]["n"] is None
    seen: list[tuple[str, bool]] = []
    assert parquet.visit_parquet(str(out), lambda i, m, f, ok, offset: seen.append((i, ok))) == 3
    assert seen == [("a", True), ("b", False), ("c", True)]


def test_the_leftovers_of_a_parquet_outputs_records_are_removed_with_its_own(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    litter = [".out.parquet.a1b2c3.gembulk-tmp", ".out.parquet.gembulk-partial.jsonl.d4e5f6.gembulk-tmp"]
    kept = [
        "out.parquet.gembulk-partial.jsonl",
        "out.parquet.gembulk-held",
        ".other.parquet.a1b2c3.gembulk-tmp",
    ]
    for name in litter + kept:
        (tmp_path / name).write_text("x")
    assert remove_leftovers(str(out)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)


def test_a_file_that_is_not_a_parquet_output_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "out.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match="not a Parquet output"):
        parquet.visit_parquet(str(path), lambda *args: None)


def test_zstandard_frames_are_read_one_after_another(tmp_path: Path) -> None:
    path = tmp_path / "out.zst"
    data = zstandard.ZstdCompressor().compress(b"a\n") + member("zstd", b"b\n")
    path.write_bytes(data)
    assert b"".join(compression_module.plain_chunks(str(path), "zstd", len(data))) == b"a\nb\n"
