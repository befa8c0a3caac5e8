"""Tests for the inputs beyond plain CSV/JSONL/TXT: compression, CSV dialects, .json, Parquet, sniffing."""

from __future__ import annotations

import asyncio
import builtins
import gzip
import hashlib
import json
import os
import sys
import threading
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from gembulk.errors import InputError, UsageError
from gembulk.inputs import InputSpec, open_input, scan_input, sniff_format, stage_input, stream
from gembulk.inputs.delimited import detect_delimiter
from gembulk.records import InputRow


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


async def read_rows(
    path: str, fmt: str, *, delimiter: str | None = None, id_column: str | None = None
) -> tuple[tuple[str, ...], list[InputRow]]:
    async with open_input(InputSpec(path, fmt, id_column=id_column, delimiter=delimiter)) as source:
        return source.columns, [row async for row in source.rows()]


def fields(rows: list[InputRow]) -> list[dict[str, Any]]:
    return [row.fields for row in rows]


def zstd(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard", reason="the zstd extra (zstandard) is not installed")
    return zstandard.ZstdCompressor().compress(data)


CSV = 'id,prompt\n1,hello\n2,"a, b"\n'
ROWS = [{"id": "1", "prompt": "hello"}, {"id": "2", "prompt": "a, b"}]


# --------------------------------------------------------------------------------------------------
# compression


@pytest.mark.parametrize("chunk_size", [1, 3, 4096])
@pytest.mark.parametrize(
    ("name", "pack"),
    [
        ("in.csv.gz", gzip.compress),
        ("in.csv.zst", zstd),
        ("in.csv", gzip.compress),  # the bytes decide, not the name
        ("in.csv.gz", lambda data: data),  # a .gz a browser already unpacked
        ("in.csv.gz", lambda data: gzip.compress(data[:9]) + gzip.compress(data[9:])),  # cat a.gz b.gz
        ("in.csv.zst", lambda data: zstd(data[:9]) + zstd(data[9:])),  # two frames
    ],
)
async def test_compressed_inputs_read_whole_and_hash_the_stored_bytes(
    tmp_path: Path, monkeypatch, name: str, pack, chunk_size: int
) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", chunk_size)
    stored = pack(CSV.encode())
    path = write(tmp_path, name, stored)
    columns, rows = await read_rows(path, "csv")
    assert columns == ("id", "prompt")
    assert fields(rows) == ROWS
    assert [row.line for row in rows] == [2, 3]
    result = await scan_input(InputSpec(path, "csv"), ["prompt"])
    assert result.row_count == 2
    assert result.sha256 == hashlib.sha256(stored).hexdigest()


@pytest.mark.parametrize(
    ("name", "pack", "kind"), [("a.csv.gz", gzip.compress, "gzip"), ("a.csv.zst", zstd, "zstd")]
)
async def test_truncated_compressed_input_is_an_error_not_a_short_input(
    tmp_path: Path, name: str, pack, kind: str
) -> None:
    data = "".join(f"{i},prompt number {i}\n" for i in range(2000)).encode()
    stored = pack(b"id,prompt\n" + data)
    path = write(tmp_path, name, stored[: len(stored) // 2])
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == f"{path}: the {kind} data ends early (a truncated file?)"


@pytest.mark.parametrize(("magic", "kind"), [(b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd")])
async def test_corrupt_compressed_input(tmp_path: Path, magic: bytes, kind: str) -> None:
    path = write(tmp_path, "a.csv", magic + b"\x08\x00this is not compressed data at all" * 3)
    with pytest.raises(InputError, match=rf"^{path}: corrupt {kind} data \("):
        await read_rows(path, "csv")


async def test_zstd_without_the_extra_names_it(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, "a.csv.zst", zstd(CSV.encode()))
    real_import = builtins.__import__

    def no_zstd(name: str, *args: Any, **kwargs: Any) -> Any:
        if name in ("zstandard", "compression"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zstd)
    with pytest.raises(UsageError, match=r"pip install 'gembulk\[zstd\]'"):
        await read_rows(path, "csv")


@pytest.mark.parametrize(
    ("content", "hint"),
    [
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\xff", "looks like a ZIP archive (an .xlsx workbook?)"),
        ("id,prompt\n1,é\n".encode("utf-16"), "looks like UTF-16 text"),
        (b"PAR1\x15\x04\x15\xff", "looks like a Parquet file"),
        (b"BZh91AY&SY\xff", "looks bzip2-compressed"),
        # mtime=0: the bytes are in the test id, and xdist workers must collect the same ids
        (gzip.compress(gzip.compress(b"id\n1\n", mtime=0), mtime=0), "is compressed again"),
    ],
)
async def test_bytes_that_are_not_text_get_a_hint(tmp_path: Path, content: bytes, hint: str) -> None:
    path = write(tmp_path, "in.csv", content)
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert "invalid UTF-8" in info.value.message
    assert hint in info.value.message


# --------------------------------------------------------------------------------------------------
# CSV dialects


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("id,prompt", ","),
        ("id;prompt", ";"),
        ("id\tprompt", "\t"),
        ("id|prompt", "|"),
        ("prompt", ","),  # one column
        ('"a,b";"c,d";e', ";"),  # delimiters inside quotes do not count
        ('id;"say ""hi"", please";x', ";"),
        ("a,b;c", ","),  # a tie goes to the comma
        ("a;b;c,d", ";"),
    ],
)
def test_detect_delimiter(header: str, expected: str) -> None:
    assert detect_delimiter(header) == expected


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
@pytest.mark.parametrize("chunk_size", [2, 4096])
async def test_csv_delimiter_told_from_the_header(
    tmp_path: Path, monkeypatch, delimiter: str, chunk_size
) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", chunk_size)
    d = delimiter
    content = f'\ufeff\n\nid{d}prompt{d}price\n1{d}"a{d} b"{d}3,5\n2{d}c, d{d}4,25\n'
    path = write(tmp_path, "eu.csv", content)
    columns, rows = await read_rows(path, "csv")
    assert columns == ("id", "prompt", "price")
    assert fields(rows) == [
        {"id": "1", "prompt": f"a{d} b", "price": "3,5"},
        {"id": "2", "prompt": "c, d", "price": "4,25"},
    ]
    assert [row.line for row in rows] == [4, 5]


async def test_explicit_delimiter_wins_and_tsv_takes_one_too(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "id;prompt,x\n1;a,b\n")
    columns, rows = await read_rows(path, "csv", delimiter=",")
    assert columns == ("id;prompt", "x")
    columns, rows = await read_rows(path, "tsv", delimiter=";")
    assert columns == ("id", "prompt,x")
    assert fields(rows) == [{"id": "1", "prompt,x": "a,b"}]


async def test_detected_delimiter_is_named_when_rows_do_not_fit(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "id;prompt\n1;a;b\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == (
        f"{path}:2: row has 3 fields, header has 2 (fields split on ';', the header's delimiter; "
        "--delimiter sets another)"
    )


async def test_delimiter_with_a_format_that_has_none(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"prompt": "a"}\n')
    with pytest.raises(UsageError, match="--delimiter applies to CSV and TSV input, not jsonl"):
        await read_rows(path, "jsonl", delimiter=";")


# --------------------------------------------------------------------------------------------------
# .json: an array of objects, or objects one after another


@pytest.mark.parametrize("chunk_size", [1, 2, 7, 4096])
@pytest.mark.parametrize(
    ("content", "lines"),
    [
        ('[{"id": 1, "prompt": "a"}, {"id": 2, "prompt": "b"}]', [1, 1]),
        ('\ufeff[\n  {\n    "id": 1,\n    "prompt": "a"\n  },\n  {"id": 2, "prompt": "b"}\n]\n', [2, 6]),
        ('{"id": 1, "prompt": "a"}\n{"id": 2, "prompt": "b"}\n', [1, 2]),  # JSON lines saved as .json
        ('{\n  "id": 1,\n  "prompt": "a"\n}\n{\n  "id": 2,\n  "prompt": "b"\n}\n', [1, 5]),  # jq's output
    ],
)
async def test_json_inputs(
    tmp_path: Path, monkeypatch, content: str, lines: list[int], chunk_size: int
) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", chunk_size)
    path = write(tmp_path, "in.json", content)
    columns, rows = await read_rows(path, "json")
    assert columns == ("id", "prompt")
    assert [(row.id, row.line, row.fields["prompt"]) for row in rows] == [
        ("1", lines[0], "a"),
        ("2", lines[1], "b"),
    ]


@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
async def test_json_numbers_and_literals_split_by_chunks(
    tmp_path: Path, monkeypatch, chunk_size: int
) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", chunk_size)
    values = [{"n": 123456789, "f": -1.25e-3, "t": True, "z": None, "s": 'ü \\ " ]'}] * 3
    path = write(tmp_path, "in.json", json.dumps(values, ensure_ascii=False))
    _, rows = await read_rows(path, "json")
    assert fields(rows) == values


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"prompt": "a"},\n "b"]', ":2: a row must be a JSON object, found a string"),
        ('[{"prompt": "a"}\n {"prompt": "b"}]', ":2: the array goes on with '{', not ',' or ']'"),
        (
            '[{"prompt": "a"},\n {"prompt": "b"',
            ":2: not valid JSON: Expecting ',' delimiter (column 16)",
        ),
        ('[{"prompt": "a"}] {"prompt": "b"}', ":1: text after the closing ']' of the array ('{')"),
        ('[{"prompt": "a"},\n\n {"prompt": nope}]', ":3: not valid JSON: Expecting value (column 13)"),
        ('{"prompt": "a"}\n{"prompt": "b}\n', ":2: not valid JSON: Invalid control character at (column 15)"),
        ('"just a string"', ":1: a row must be a JSON object, found a string"),
    ],
)
async def test_json_errors_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path, "in.json", content)
    with pytest.raises(InputError) as info:
        await read_rows(path, "json")
    assert info.value.message == path + message


async def test_json_error_early_in_a_big_array_is_found_without_reading_the_rest(tmp_path: Path) -> None:
    rows = ",".join('{"prompt": "%s"}' % ("x" * 100) for _ in range(100_000))
    path = write(tmp_path, "in.json", '[{"prompt": "a"}, {"prompt": oops}, ' + rows + "]")
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r":1: not valid JSON: Expecting value"):
            await read_rows(path, "json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024  # the 11 MB file was not read whole


async def test_empty_json_array_and_file_have_no_rows(tmp_path: Path) -> None:
    for content in ("[]", " [ \n ] \n", "", "\n"):
        columns, rows = await read_rows(write(tmp_path, "in.json", content), "json")
        assert (columns, rows) == ((), [])


async def test_json_object_larger_than_many_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", 64)
    big = "word " * 20_000
    path = write(tmp_path, "in.json", json.dumps([{"prompt": "a"}, {"prompt": big}, {"prompt": "c"}]))
    _, rows = await read_rows(path, "json")
    assert [row.fields["prompt"] for row in rows] == ["a", big, "c"]


async def test_large_json_array_streams_with_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    text = "lorem ipsum " * 200
    with path.open("w", encoding="utf-8") as handle:
        handle.write("[\n")
        for i in range(30_000):
            handle.write(f'{{"prompt": "question {i}: {text}"}},\n')
        handle.write('{"prompt": "end"}\n]\n')
    tracemalloc.start()
    try:
        result = await scan_input(InputSpec(str(path), "json"), ["prompt"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.row_count == 30_001
    assert peak < 16 * 1024 * 1024  # the 72 MB file is never held whole


# --------------------------------------------------------------------------------------------------
# Parquet


@pytest.fixture
def pq():
    return pytest.importorskip("pyarrow.parquet", reason="the parquet extra (pyarrow) is not installed")


async def test_parquet_values_become_json_values(tmp_path: Path, pq) -> None:
    import datetime
    import decimal

    import pyarrow as pa

    table = pa.table(
        {
            "id": pa.array([10, 20, 30], pa.int64()),
            "prompt": ["a", None, "c"],
            "tags": [["x", "y"], [], None],
            "meta": [{"k": 1, "v": "s"}, None, {"k": 3, "v": None}],
            "kv": pa.array([[("a", 1)], [], None], pa.map_(pa.string(), pa.int64())),
            "when": [datetime.datetime(2024, 5, 1, 12, 30), None, None],
            "day": [datetime.date(2024, 5, 1), None, None],
            "price": pa.array([decimal.Decimal("1.50"), None, None], pa.decimal128(5, 2)),
            "raw": [b"text", b"\xff\x00", None],
            "score": [1.5, float("nan"), None],
            "label": pa.array(["p", "q", "p"]).dictionary_encode(),
        }
    )
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    columns, rows = await read_rows(str(path), "parquet")
    assert columns == tuple(table.column_names)
    assert [(row.id, row.line, row.index) for row in rows] == [("10", 1, 1), ("20", 2, 2), ("30", 3, 3)]
    assert rows[0].fields == {
        "id": 10,
        "prompt": "a",
        "tags": ["x", "y"],
        "meta": {"k": 1, "v": "s"},
        "kv": {"a": 1},
        "when": "2024-05-01T12:30:00",
        "day": "2024-05-01",
        "price": "1.50",
        "raw": "text",
        "score": 1.5,
        "label": "p",
    }
    assert rows[1].fields["raw"] == "/wA="  # base64: not text
    assert rows[1].fields["score"] is None  # NaN: JSON has none
    assert rows[1].fields["prompt"] is None
    for row in rows:
        json.dumps(row.fields, allow_nan=False)  # every value is one JSON holds


async def test_parquet_streams_row_groups_and_hashes_the_file(tmp_path: Path, pq, monkeypatch) -> None:
    import pyarrow as pa

    from gembulk.inputs import parquet

    monkeypatch.setattr(parquet, "BATCH_ROWS", 100)
    table = pa.table({"id": [f"r{i}" for i in range(1000)], "prompt": [f"p{i}" for i in range(1000)]})
    path = tmp_path / "in.parquet"
    pq.write_table(table, path, row_group_size=300)
    result = await scan_input(InputSpec(str(path), "parquet"), ["prompt"])
    assert (result.columns, result.id_column, result.row_count) == (("id", "prompt"), "id", 1000)
    assert result.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    async with open_input(InputSpec(str(path), "parquet")) as source:
        sizes = [len(batch) async for batch in source.row_batches()]
    assert max(sizes) <= 100 and sum(sizes) == 1000


async def test_parquet_duplicate_ids_name_the_row(tmp_path: Path, pq) -> None:
    import pyarrow as pa

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"id": [1, 2, 1], "prompt": ["a", "b", "c"]}), path)
    with pytest.raises(InputError, match=r"in.parquet:3: duplicate id '1' \(first at line 1\)"):
        await scan_input(InputSpec(str(path), "parquet"))


async def test_parquet_refusals(tmp_path: Path, pq) -> None:
    import pyarrow as pa

    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"prompt": ["a"]}), path)
    packed = write(tmp_path, "in.parquet.gz", gzip.compress(path.read_bytes()))
    with pytest.raises(InputError, match="a gzip-compressed Parquet file; Parquet compresses its own pages"):
        await read_rows(packed, "parquet")
    not_parquet = write(tmp_path, "in.csv", CSV)
    with pytest.raises(InputError, match=r"in.csv: not a readable Parquet file \("):
        await read_rows(not_parquet, "parquet")


async def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    path = write(tmp_path, "in.parquet", b"PAR1")
    for name in ("pyarrow", "pyarrow.parquet", "pyarrow.compute"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UsageError) as info:
        await read_rows(path, "parquet")
    assert info.value.message == "reading Parquet needs pyarrow: pip install 'gembulk[parquet]'"


# --------------------------------------------------------------------------------------------------
# inputs without a name to go by: stdin, pipes


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b'{"prompt": "a"}\n', "jsonl"),
        (b"\xef\xbb\xbf\n\n  [\n{}]", "json"),
        (b'{\n  "prompt": "a"\n}\n{\n  "prompt": "b"\n}\n', "json"),  # jq's output
        (b'{"prompt": "{"}\n', "jsonl"),
        (gzip.compress(b' [{"prompt": "a"}]', mtime=0), "json"),  # mtime=0: same test id in every worker
        (b"", "jsonl"),
        (b"PAR1\x00\x00", "parquet"),
    ],
)
async def test_sniff_format(tmp_path: Path, content: bytes, expected: str) -> None:
    assert await sniff_format(write(tmp_path, "x", content), "<stdin>") == expected


async def test_sniffing_plain_text_names_the_txt_format(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        await sniff_format(write(tmp_path, "x", "Summarize the French revolution\nand more\n"), "<stdin>")
    assert info.value.message == (
        "<stdin>: cannot tell the input format: it is not JSON "
        "(it starts with 'Summarize the French revolution'); "
        "for one prompt a line pass --input-format txt, for a table --input-format csv or tsv"
    )


async def test_a_fifo_is_spooled_and_read_like_stdin(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    payload = gzip.compress(b'[{"id": "a", "prompt": "x"}]')

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(payload)

    writer = threading.Thread(target=feed)
    writer.start()
    staged = await asyncio.wait_for(stage_input(str(fifo), None, spool_dir=str(tmp_path)), 10)
    writer.join()
    try:
        assert staged.stream and staged.spool is not None
        assert (staged.spec.format, staged.spec.name) == ("json", str(fifo))
        assert Path(staged.spool).read_bytes() == payload
        _, rows = await read_rows(staged.spec.path, staged.spec.format)
        assert fields(rows) == [{"id": "a", "prompt": "x"}]
    finally:
        os.unlink(staged.spool)


async def test_stage_input_refuses_what_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory, not an input file"):
        await stage_input(str(tmp_path), "csv")
    with pytest.raises(InputError, match=r"nope\.xyz: no such file"):
        await stage_input(str(tmp_path / "nope.xyz"), None)


async def test_pretty_printed_json_named_jsonl_points_at_the_json_format(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{\n  "prompt": "a"\n}\n')
    with pytest.raises(InputError) as info:
        await read_rows(path, "jsonl")
    assert info.value.message.endswith(
        "; JSON spread over several lines is read with --input-format json (or a .json name)"
    )
