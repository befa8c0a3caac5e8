"""Tests for gembulk.inputs: formats, line numbers, ids, chunking, stdin, scanning and memory."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import time
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from gembulk.errors import InputError, UsageError
from gembulk.inputs import InputSpec, detect_format, open_input, scan_input, spool_stdin, stream
from gembulk.records import InputRow


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_bytes(content.encode())
    else:
        path.write_bytes(content)
    return str(path)


async def read_rows(
    path: str, fmt: str, id_column: str | None = None, display_name: str | None = None
) -> tuple[tuple[str, ...], str | None, list[InputRow]]:
    spec = InputSpec(path, fmt, id_column=id_column, display_name=display_name)
    async with open_input(spec) as source:
        rows = [row async for row in source.rows()]
        return source.columns, source.id_column, rows


def summary(rows: list[InputRow]) -> list[tuple[str, int, dict]]:
    return [(r.id, r.line, r.fields) for r in rows]


# --------------------------------------------------------------------------------------------------
# detect_format


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("in.csv", "csv"),
        ("IN.CSV", "csv"),
        ("data/x.tsv", "tsv"),
        ("x.jsonl", "jsonl"),
        ("x.NDJSON", "jsonl"),
        ("notes.txt", "txt"),
        ("rows.json", "json"),
        ("rows.parquet", "parquet"),
        ("rows.csv.gz", "csv"),
        ("rows.JSONL.ZST", "jsonl"),
        ("rows.tsv.zstd", "tsv"),
        ("-", None),  # the content decides
    ],
)
def test_detect_format_by_extension(path: str, expected: str | None) -> None:
    assert detect_format(path, None) == expected


def test_detect_format_explicit_wins() -> None:
    assert detect_format("in.csv", "jsonl") == "jsonl"
    assert detect_format("-", "csv") == "csv"
    assert detect_format("x.weird", "TSV") == "tsv"
    assert detect_format("x.weird", "ndjson") == "jsonl"


def test_detect_format_unknown_extension_names_file_and_formats() -> None:
    with pytest.raises(InputError) as info:
        detect_format("data/prompts.xlsx", None)
    message = info.value.message
    assert "data/prompts.xlsx" in message
    assert "'.xlsx'" in message
    for accepted in (".csv", ".tsv", ".jsonl", ".ndjson", ".txt", "--input-format"):
        assert accepted in message


def test_detect_format_no_extension() -> None:
    with pytest.raises(InputError, match="no extension"):
        detect_format("prompts", None)


def test_detect_format_bad_explicit_is_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown input format 'xml'"):
        detect_format("x.csv", "xml")


# --------------------------------------------------------------------------------------------------
# CSV


async def test_csv_quotes_commas_doubled_quotes_and_newlines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "in.csv",
        'id,prompt,note\n1,"Hello, world","say ""hi"""\n2,"line one\nline two\nline three",x\n3,plain,\n',
    )
    columns, id_column, rows = await read_rows(path, "csv")
    assert columns == ("id", "prompt", "note")
    assert id_column == "id"
    assert summary(rows) == [
        ("1", 2, {"id": "1", "prompt": "Hello, world", "note": 'say "hi"'}),
        ("2", 3, {"id": "2", "prompt": "line one\nline two\nline three", "note": "x"}),
        ("3", 6, {"id": "3", "prompt": "plain", "note": ""}),
    ]
    assert [r.index for r in rows] == [1, 2, 3]


async def test_csv_crlf_and_embedded_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", 'id,prompt\r\n1,"a\r\nb"\r\n2,c\r\n')
    _, _, rows = await read_rows(path, "csv")
    assert summary(rows) == [("1", 2, {"id": "1", "prompt": "a\r\nb"}), ("2", 4, {"id": "2", "prompt": "c"})]


async def test_csv_bom_is_stripped(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"\xef\xbb\xbfid,prompt\n1,hi\n")
    columns, id_column, rows = await read_rows(path, "csv")
    assert columns == ("id", "prompt")
    assert id_column == "id"
    assert rows[0].fields == {"id": "1", "prompt": "hi"}


async def test_csv_last_row_without_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", 'prompt\nfirst\n"second\nhalf"')
    _, _, rows = await read_rows(path, "csv")
    assert summary(rows) == [("1", 2, {"prompt": "first"}), ("2", 3, {"prompt": "second\nhalf"})]


async def test_csv_blank_lines_skipped_and_lines_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "\nprompt,n\n\na,1\n\r\n\nb,2\n\n")
    columns, _, rows = await read_rows(path, "csv")
    assert columns == ("prompt", "n")
    assert [(r.id, r.line, r.index) for r in rows] == [("1", 4, 1), ("2", 7, 2)]


async def test_tsv(tmp_path: Path) -> None:
    path = write(tmp_path, "in.tsv", 'id\tprompt\n7\ta, b, c\n8\t"tab\there"\n')
    _, _, rows = await read_rows(path, "tsv")
    assert summary(rows) == [
        ("7", 2, {"id": "7", "prompt": "a, b, c"}),
        ("8", 3, {"id": "8", "prompt": "tab\there"}),
    ]


CHUNKY_CSV = (
    "id,prompt,extra\n"
    '1,"a ""quoted"" field, with comma\nand a newline",é\n'
    '2,"ünïcödé 🙂 text\r\nspanning\r\nlines",""\n'
    "\n"
    '3,short,"x\ny\nz"\n'
    "4,last,end"
)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 7, 16, 64, 1 << 20])
async def test_csv_chunk_boundaries_anywhere(tmp_path: Path, monkeypatch, chunk_size: int) -> None:
    path = write(tmp_path, "in.csv", CHUNKY_CSV)
    monkeypatch.setattr(stream, "CHUNK_SIZE", chunk_size)
    _, _, rows = await read_rows(path, "csv")
    expected = list(csv.reader(io.StringIO(CHUNKY_CSV, newline="")))[1:]
    assert [list(r.fields.values()) for r in rows] == [e for e in expected if e]
    assert [r.line for r in rows] == [2, 4, 8, 11]


async def test_csv_chunk_boundary_inside_quoted_field_with_many_quotes(tmp_path: Path, monkeypatch) -> None:
    value = '"quoted" ' * 50 + "\n" + "x" * 300 + '\n""'
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "prompt"])
    for i in range(20):
        writer.writerow([f"r{i}", value + str(i)])
    path = write(tmp_path, "in.csv", buffer.getvalue())
    monkeypatch.setattr(stream, "CHUNK_SIZE", 97)
    _, _, rows = await read_rows(path, "csv")
    assert [r.fields["prompt"] for r in rows] == [value + str(i) for i in range(20)]
    assert [r.line for r in rows] == [2 + 3 * i for i in range(20)]


async def test_csv_extra_fields_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", 'id,prompt\n1,ok\n2,"multi\nline",oops\n')
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == f"{path}:3: row has 3 fields, header has 2"


async def test_csv_missing_fields_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "a,b,c\n1,2,3\n4,5\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == f"{path}:3: row has 2 fields, header has 3"


async def test_csv_unterminated_quote_names_record_start(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", 'id,prompt\n1,fine\n2,"never\nclosed\nat all\n')
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message.startswith(f"{path}:3: unterminated quoted field")


async def test_csv_empty_file_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "")
    with pytest.raises(InputError, match="empty input"):
        await read_rows(path, "csv")


async def test_csv_header_with_empty_name(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "id,,prompt\n1,2,3\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == f"{path}:1: header column 2 has an empty name"


async def test_csv_duplicate_column_names(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "id,prompt,prompt\n1,2,3\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == f"{path}:1: duplicate column name 'prompt' in the header"


async def test_csv_bare_carriage_return(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "id,prompt\n1,a\rb\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message.startswith(f"{path}:2: malformed CSV")


async def test_csv_long_field_beyond_csv_default_limit(tmp_path: Path) -> None:
    long_text = "word " * 60_000  # 300 KB, above the csv module's default 128 KiB field limit
    path = write(tmp_path, "in.csv", f'id,prompt\n1,"{long_text}"\n')
    _, _, rows = await read_rows(path, "csv")
    assert rows[0].fields["prompt"] == long_text


# --------------------------------------------------------------------------------------------------
# Encoding


async def test_invalid_utf8_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", b"id,prompt\n1,ok\n2,caf\xe9\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message.startswith(f"{path}:3: invalid UTF-8")


async def test_invalid_utf8_across_small_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", 3)
    path = write(tmp_path, "in.txt", b"one\ntwo\nthr\xff\xfeee\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "txt")
    assert info.value.message.startswith(f"{path}:3: invalid UTF-8")


async def test_truncated_utf8_at_end(tmp_path: Path) -> None:
    path = write(tmp_path, "in.txt", b"one\n" + "é".encode()[:1])
    with pytest.raises(InputError, match=r":2: invalid UTF-8"):
        await read_rows(path, "txt")


# --------------------------------------------------------------------------------------------------
# JSONL


async def test_jsonl_rows_blank_lines_and_columns(tmp_path: Path) -> None:
    lines = [
        '{"id": "a", "prompt": "p1", "n": 1}',
        "",
        "   ",
        '{"id": "b", "prompt": "p2", "extra": {"k": [1, 2]}}',
        '{"id": "c", "prompt": null}\r',
    ]
    path = write(tmp_path, "in.jsonl", "\n".join(lines) + "\n")
    columns, id_column, rows = await read_rows(path, "jsonl")
    assert columns == ("id", "prompt", "n")
    assert id_column == "id"
    assert summary(rows) == [
        ("a", 1, {"id": "a", "prompt": "p1", "n": 1}),
        ("b", 4, {"id": "b", "prompt": "p2", "extra": {"k": [1, 2]}}),
        ("c", 5, {"id": "c", "prompt": None}),
    ]


async def test_jsonl_bad_json_names_line(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"prompt": "ok"}\n\n{"prompt": "broken"\n')
    with pytest.raises(InputError) as info:
        await read_rows(path, "jsonl")
    assert info.value.message.startswith(f"{path}:3: not a JSON object: ")


@pytest.mark.parametrize(
    ("line", "kind"), [("[1, 2]", "an array"), ('"text"', "a string"), ("42", "a number"), ("null", "null")]
)
async def test_jsonl_non_object(tmp_path: Path, line: str, kind: str) -> None:
    path = write(tmp_path, "in.jsonl", '{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "jsonl")
    assert info.value.message == f"{path}:2: not a JSON object: found {kind}"


async def test_jsonl_numeric_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"id": 7, "prompt": "a"}\n{"id": 1.0, "prompt": "b"}\n{"id": "x"}\n')
    _, _, rows = await read_rows(path, "jsonl")
    assert [r.id for r in rows] == ["7", "1.0", "x"]


@pytest.mark.parametrize(
    ("value", "kind"), [("true", "a boolean"), ('{"a": 1}', "an object"), ("[1]", "an array")]
)
async def test_jsonl_bad_id_types(tmp_path: Path, value: str, kind: str) -> None:
    path = write(tmp_path, "in.jsonl", '{"id": "1"}\n{"id": ' + value + "}\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "jsonl")
    assert info.value.message == f"{path}:2: id in 'id' must be a string or a number, not {kind}"


async def test_jsonl_id_missing_in_later_row(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"id": "1", "prompt": "a"}\n{"prompt": "b"}\n')
    with pytest.raises(InputError) as info:
        await read_rows(path, "jsonl")
    assert info.value.message == f"{path}:2: row has no id: field 'id' is missing"


async def test_jsonl_null_id(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"id": null, "prompt": "a"}\n')
    with pytest.raises(InputError, match=r":1: row has no id: 'id' is empty"):
        await read_rows(path, "jsonl")


async def test_jsonl_empty_input_has_no_columns_and_no_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", "\n\n")
    columns, id_column, rows = await read_rows(path, "jsonl")
    assert (columns, id_column, rows) == ((), None, [])


async def test_jsonl_empty_input_with_explicit_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", "")
    columns, id_column, rows = await read_rows(path, "jsonl", id_column="key")
    assert (columns, id_column, rows) == ((), "key", [])


async def test_jsonl_lines_longer_than_a_chunk(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_SIZE", 8)
    records = [{"prompt": "x" * 100 + str(i), "ü": "ß"} for i in range(5)]
    path = write(tmp_path, "in.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    _, _, rows = await read_rows(path, "jsonl")
    assert [r.fields for r in rows] == records
    assert [r.line for r in rows] == [1, 2, 3, 4, 5]


# --------------------------------------------------------------------------------------------------
# TXT


async def test_txt_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "in.txt", "first prompt\r\n\n  indented  inner  spaces \n   \nlast")
    columns, id_column, rows = await read_rows(path, "txt")
    assert columns == ("prompt",)
    assert id_column is None
    assert summary(rows) == [
        ("1", 1, {"prompt": "first prompt"}),
        ("2", 3, {"prompt": "  indented  inner  spaces "}),
        ("3", 5, {"prompt": "last"}),
    ]


# --------------------------------------------------------------------------------------------------
# Ids


async def test_default_ids_are_row_numbers_without_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "prompt\na\n\nb\nc\n")
    _, id_column, rows = await read_rows(path, "csv")
    assert id_column is None
    assert [(r.id, r.index, r.line) for r in rows] == [("1", 1, 2), ("2", 2, 4), ("3", 3, 5)]


async def test_explicit_id_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "key,id,prompt\nk1,x,a\nk2,x,b\n")
    _, id_column, rows = await read_rows(path, "csv", id_column="key")
    assert id_column == "key"
    assert [r.id for r in rows] == ["k1", "k2"]


async def test_explicit_id_column_not_in_header_fails_before_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "id,prompt\n1,a\n")
    with pytest.raises(InputError) as info:
        await open_input(InputSpec(path, "csv", id_column="key"))
    assert info.value.message == f"{path}:1: id column 'key' is not in the input (columns: id, prompt)"


async def test_explicit_id_column_not_in_first_jsonl_object(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '\n{"prompt": "a"}\n{"key": "k", "prompt": "b"}\n')
    with pytest.raises(InputError, match=r":2: id column 'key' is not in the input"):
        await open_input(InputSpec(path, "jsonl", id_column="key"))


async def test_empty_explicit_id_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "key,prompt\nk1,a\n ,b\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv", id_column="key")
    assert info.value.message == f"{path}:3: row has no id: 'key' is empty"


async def test_duplicate_ids(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", 'id,prompt\n1,a\n2,"b\nb"\n1,c\n')
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == f"{path}:5: duplicate id '1' (first at line 2)"


async def test_duplicate_numeric_and_string_ids_collide(tmp_path: Path) -> None:
    path = write(tmp_path, "in.jsonl", '{"id": 3}\n{"id": "3"}\n')
    with pytest.raises(InputError, match=r":2: duplicate id '3' \(first at line 1\)"):
        await read_rows(path, "jsonl")


async def test_the_first_repeat_is_named_whatever_the_hashes_say(tmp_path: Path, monkeypatch) -> None:
    """Ids are compared by hash first; every id hashing alike must still refuse only a true repeat."""
    from gembulk.inputs import ids, source

    monkeypatch.setattr(ids, "_RUN", 2)
    for module in (ids, source):
        monkeypatch.setattr(module, "hash", lambda _: 42, raising=False)
    rows = "".join(f"r{i},p\n" for i in range(7))
    path = write(tmp_path, "in.csv", f"id,prompt\n{rows}")
    _, _, read = await read_rows(path, "csv")  # all different, all colliding: accepted
    assert len(read) == 7
    path = write(tmp_path, "in.csv", f"id,prompt\n{rows}r5,again\nr2,again\n")
    with pytest.raises(InputError) as info:
        await read_rows(path, "csv")
    assert info.value.message == f"{path}:9: duplicate id 'r5' (first at line 7)"


async def test_duplicate_ids_on_stdin_read_directly(monkeypatch) -> None:
    fake_stdin(monkeypatch, b"id,prompt\n1,a\n2,b\n1,c\n")
    with pytest.raises(InputError) as info:
        await read_rows("-", "csv")
    assert info.value.message == "<stdin>:4: duplicate id '1' (first at line 2)"


# --------------------------------------------------------------------------------------------------
# Opening, reading once, stdin


async def test_await_open_input_and_read_once(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "prompt\na\n")
    source = await open_input(InputSpec(path, "csv"))
    try:
        assert source.columns == ("prompt",)
        assert [r.fields async for r in source.rows()] == [{"prompt": "a"}]
        with pytest.raises(RuntimeError):
            [r async for r in source.rows()]
    finally:
        await source.aclose()


async def test_missing_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.csv")
    with pytest.raises(InputError, match="cannot open input"):
        await open_input(InputSpec(path, "csv"))


def file_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def fake_stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(data)))


async def test_spool_stdin_copies_everything(tmp_path: Path, monkeypatch) -> None:
    data = "".join(f'{{"id": "{i}", "prompt": "p{i} ü"}}\n' for i in range(2000)).encode()
    fake_stdin(monkeypatch, data)
    monkeypatch.setattr(stream, "CHUNK_SIZE", 1000)
    path = await spool_stdin(str(tmp_path))
    assert Path(path).parent == tmp_path
    assert file_bytes(path) == data
    result = await scan_input(InputSpec(path, "jsonl", display_name="<stdin>"), ["prompt"])
    assert result.row_count == 2000
    assert result.sha256 == hashlib.sha256(data).hexdigest()


async def test_spooled_stdin_errors_say_stdin(tmp_path: Path, monkeypatch) -> None:
    fake_stdin(monkeypatch, b'{"prompt": "a"}\nnot json\n')
    path = await spool_stdin(str(tmp_path))
    with pytest.raises(InputError) as info:
        await read_rows(path, "jsonl", display_name="<stdin>")
    assert info.value.message.startswith("<stdin>:2: not a JSON object")


async def test_read_stdin_directly(monkeypatch) -> None:
    fake_stdin(monkeypatch, b"id,prompt\n1,a\n2,b\n")
    columns, _, rows = await read_rows("-", "csv")
    assert columns == ("id", "prompt")
    assert [r.id for r in rows] == ["1", "2"]


async def test_stdin_display_name_in_errors(monkeypatch) -> None:
    fake_stdin(monkeypatch, b"[1]\n")
    with pytest.raises(InputError) as info:
        await read_rows("-", "jsonl")
    assert info.value.message == "<stdin>:1: not a JSON object: found an array"


# --------------------------------------------------------------------------------------------------
# scan_input


async def test_scan_input_counts_and_hashes(tmp_path: Path) -> None:
    content = 'id,prompt\n1,a\n2,"b\nc"\n\n3,d\n'
    path = write(tmp_path, "in.csv", content)
    result = await scan_input(InputSpec(path, "csv"), ["prompt"])
    assert result.columns == ("id", "prompt")
    assert result.id_column == "id"
    assert result.row_count == 3
    assert result.sha256 == hashlib.sha256(content.encode()).hexdigest()


async def test_scan_input_hash_includes_bom(tmp_path: Path) -> None:
    content = b"\xef\xbb\xbfprompt\na\n"
    path = write(tmp_path, "in.csv", content)
    result = await scan_input(InputSpec(path, "csv"))
    assert result.sha256 == hashlib.sha256(content).hexdigest()


async def test_scan_input_notes_which_jsonl_fields_some_row_has(tmp_path: Path) -> None:
    # a row without a field fails alone (MISSING_VALUE) later; the scan says which fields any row has,
    # so a template naming a field no row has is refused before anything is sent
    path = write(tmp_path, "in.jsonl", '{"q": "a"}\n{"q": "b", "lang": "fr"}\n\n{"q": "c"}\n')
    scan = await scan_input(InputSpec(path, "jsonl"), ["q", "lang", "nowhere"])
    assert scan.row_count == 3
    assert scan.fields_seen == frozenset({"q", "lang"})


async def test_scan_input_missing_csv_column(tmp_path: Path) -> None:
    path = write(tmp_path, "in.csv", "id,text\n1,a\n")
    with pytest.raises(InputError) as info:
        await scan_input(InputSpec(path, "csv"), ["prompt"])
    assert info.value.message == f"{path}:1: no column 'prompt' used by the template (columns: id, text)"


async def test_scan_input_finds_late_errors(tmp_path: Path) -> None:
    body = "".join(f"{i},p{i}\n" for i in range(1, 5000))
    path = write(tmp_path, "in.csv", "id,prompt\n" + body + "17,again\n")
    with pytest.raises(InputError) as info:
        await scan_input(InputSpec(path, "csv"))
    assert info.value.message == f"{path}:5001: duplicate id '17' (first at line 18)"


# --------------------------------------------------------------------------------------------------
# Scale


def big_csv(tmp_path: Path, rows: int, with_ids: bool) -> tuple[str, int]:
    path = tmp_path / "big.csv"
    text = "Summarize this customer message, please, in one line: " + "lorem ipsum dolor sit amet " * 6
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("id,prompt\n" if with_ids else "prompt,n\n")
        for i in range(rows):
            handle.write(f'{i},"{text}{i}"\n' if with_ids else f'"{text}",{i}\n')
    return str(path), path.stat().st_size


async def test_large_csv_streams_with_bounded_memory(tmp_path: Path) -> None:
    path, size = big_csv(tmp_path, 200_000, with_ids=False)
    tracemalloc.start()
    try:
        result = await scan_input(InputSpec(path, "csv"), ["prompt"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.row_count == 200_000
    assert size > 30_000_000
    assert peak < size / 10, f"peak {peak} bytes for a {size}-byte file"


async def test_unique_ids_are_checked_in_little_memory(tmp_path: Path) -> None:
    peaks = []
    for with_ids in (False, True):
        path, _ = big_csv(tmp_path, 60_000, with_ids=with_ids)
        tracemalloc.start()
        try:
            result = await scan_input(InputSpec(path, "csv"), ["prompt"])
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert result.row_count == 60_000
    assert result.id_column == "id"
    # 8 bytes an id, and a run of them sorted at a time; the id strings in a dict would take ~8 MB.
    assert peaks[1] - peaks[0] < 3 * 1024 * 1024, peaks


@pytest.mark.timing
async def test_100k_rows_scan_quickly(tmp_path: Path) -> None:
    path, _ = big_csv(tmp_path, 100_000, with_ids=True)
    started = time.perf_counter()
    result = await scan_input(InputSpec(path, "csv"), ["prompt"])
    elapsed = time.perf_counter() - started
    assert result.row_count == 100_000
    assert elapsed < 2.0, f"scan took {elapsed:.2f}s"
