"""Output formats: JSONL, CSV and Parquet, the column layout of a record and back, and the encoders the writer
uses (a compressed output's encoder wraps the plain one)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gembulk.errors import UsageError
from gembulk.outputs.compression import member, without_compression_suffix
from gembulk.records import RESERVED_KEYS

# Parquet is written at the end of a run from JSONL kept beside OUT (gembulk/outputs/parquet.py).
OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "csv", "parquet")
CSV_BASE_COLUMNS: tuple[str, ...] = (
    "id",
    "response",
    "error_code",
    "error_status",
    "error_message",
    "finish_reason",
    "prompt_tokens",
    "output_tokens",
    "thoughts_tokens",
    "total_tokens",
    "cached_tokens",
    "model",
)
# usage.cached_tokens: the part of the prompt read from a context cache (--context), 0 otherwise.
USAGE_COLUMNS = ("prompt_tokens", "output_tokens", "thoughts_tokens", "total_tokens", "cached_tokens")
ERROR_COLUMNS = ("error_code", "error_status", "error_message")
FINGERPRINT_COLUMN = "fingerprint"
# An input column whose name a record (or the CSV layout) already uses is written as "input.<name>".
INPUT_PREFIX = "input."
CSV_ONLY_COLUMNS = frozenset(CSV_BASE_COLUMNS) - RESERVED_KEYS  # error_code, prompt_tokens, …
# RFC 4180 line ending. With "\n" the csv module leaves a field holding a bare "\r" unquoted, and such
# a file no longer parses; with "\r\n" both characters force quoting.
_CSV_LINE_END = "\r\n"


def detect_output_format(path: str, explicit: str | None) -> str:
    """The output format: the explicit one, else .csv means csv, .parquet (.pq) parquet and everything
    else jsonl (a .gz or .zst ending is looked through: out.csv.gz is csv)."""
    if explicit is not None:
        fmt = explicit.lower()
        if fmt not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format '{explicit}' (accepted: {', '.join(OUTPUT_FORMATS)})")
        return fmt
    name = without_compression_suffix(path).lower() if path != "-" else ""
    if name.endswith(".csv"):
        return "csv"
    return "parquet" if name.endswith((".parquet", ".pq")) else "jsonl"


# ---------------------------------------------------------------------------------------------------
# CSV layout.


def _collides(column: str, id_column: str | None) -> bool:
    """Whether an input column is kept as "input.<name>": its name is a record's or a result column's."""
    return column != id_column and (column in RESERVED_KEYS or column in CSV_ONLY_COLUMNS)


def csv_columns(
    input_columns: Sequence[str], with_parsed: bool, id_column: str | None = None
) -> tuple[str, ...]:
    """Header of a CSV output: result columns, the fingerprint, then the input columns carried along.

    An input column named like a result column is kept as "input.<name>" (chained runs keep the first
    stage's fields); the id column is the record's id.
    """
    columns = list(CSV_BASE_COLUMNS)
    if with_parsed:
        columns.append("parsed")
    columns.append(FINGERPRINT_COLUMN)
    for column in dict.fromkeys(input_columns):
        if _collides(column, id_column):
            columns.append(INPUT_PREFIX + column)
        elif column not in RESERVED_KEYS:
            columns.append(column)
    return tuple(columns)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _json(value)


def _flat_result(record: Mapping[str, Any]) -> dict[str, Any]:
    error = record.get("error")
    usage = record.get("usage") or {}
    flat: dict[str, Any] = {
        "id": record.get("id"),
        "response": record.get("response"),
        "finish_reason": record.get("finish_reason"),
        "model": record.get("model"),
        # parsed is always JSON in CSV, so a parsed string "12" cannot come back as the number 12.
        "parsed": None if record.get("parsed") is None else _json(record["parsed"]),
    }
    for column in USAGE_COLUMNS:
        flat[column] = usage.get(column)
    if error is None:
        flat.update(error_code=None, error_status=None, error_message=None)
    else:
        # A failure must never read back as a success, so its status cell is never empty.
        flat.update(
            error_code=error.get("code"),
            error_status=error.get("status") or "ERROR",
            error_message=error.get("message"),
        )
    return flat


def _input_value(record: Mapping[str, Any], name: str) -> Any:
    """The value of an "input.<name>" column: the record's "input" object holds a record key's namesake."""
    if name in RESERVED_KEYS:
        nested = record.get("input")
        return nested.get(name) if isinstance(nested, dict) else None
    return record.get(name)


def record_to_row(record: Mapping[str, Any], columns: Sequence[str]) -> list[Any]:
    """A record's values in the column layout (CSV, Parquet): usage and error flattened, `parsed` as
    JSON text, input fields as they are."""
    flat = _flat_result(record)
    values: list[Any] = []
    for column in columns:
        if column in flat:
            value = flat[column]
        elif column.startswith(INPUT_PREFIX) and column not in record:
            value = _input_value(record, column[len(INPUT_PREFIX) :])
        else:
            value = record.get(column)
        values.append(value)
    return values


def record_to_csv_row(record: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """The CSV cells of a record: None is empty, strings as is, anything else JSON."""
    return [_cell(value) for value in record_to_row(record, columns)]


def _int_or_none(cell: str) -> int | None:
    try:
        return int(cell)
    except ValueError:
        return None


def _parsed_from_cell(cell: str) -> Any:
    if not cell:
        return None
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        return cell


def csv_row_to_record(row: Mapping[str, str]) -> dict[str, Any]:
    """A record from CSV cells keyed by header: the inverse of record_to_csv_row, input fields as strings."""
    failed = any(row.get(c) for c in ERROR_COLUMNS)
    error = None
    if failed:
        code = row.get("error_code", "")
        error = {
            "code": _int_or_none(code) if code else None,
            "status": row.get("error_status", ""),
            "message": row.get("error_message", ""),
        }
    usage = None
    if any(row.get(c) for c in USAGE_COLUMNS):
        usage = {c: _int_or_none(row.get(c, "")) or 0 for c in USAGE_COLUMNS}
    response = row.get("response", "")
    record: dict[str, Any] = {
        "id": row["id"],
        "response": (response or None) if failed else response,
        "error": error,
        "finish_reason": row.get("finish_reason") or None,
        "usage": usage,
        "model": row.get("model") or None,
    }
    if "parsed" in row:
        record["parsed"] = _parsed_from_cell(row["parsed"])
    if FINGERPRINT_COLUMN in row:
        record[FINGERPRINT_COLUMN] = row[FINGERPRINT_COLUMN] or None
    place_input_fields(record, row)
    return record


def place_input_fields(record: dict[str, Any], row: Mapping[str, Any]) -> None:
    """The input fields of a row in the column layout, put back where a record keeps them: an
    "input.<name>" column of a record key under "input", of a result column under its own name."""
    nested: dict[str, Any] = {}
    for column, value in row.items():
        if column in record or column in CSV_BASE_COLUMNS:
            continue
        name = column[len(INPUT_PREFIX) :] if column.startswith(INPUT_PREFIX) else None
        if name in RESERVED_KEYS:
            nested[name] = value
        elif name in CSV_ONLY_COLUMNS:
            record[name] = value
        else:
            record[column] = value
    if nested:
        record["input"] = nested


# ---------------------------------------------------------------------------------------------------
# Encoders: prepare() runs in write() so a bad record fails its caller; encode() runs once per batch.


class Encoder(Protocol):
    header: tuple[str, ...] | None  # the CSV header written first (and checked on append); None: none

    def prepare(self, record: Mapping[str, Any]) -> Any: ...

    def encode(self, items: list[Any]) -> bytes: ...


class JsonlEncoder:
    header = None

    def prepare(self, record: Mapping[str, Any]) -> bytes:
        line = _json(record) + "\n"
        try:
            return line.encode()
        except UnicodeEncodeError:
            # A lone surrogate (possible in JSON input) has no UTF-8 form; JSON escapes can carry it.
            return (json.dumps(record, separators=(",", ":")) + "\n").encode()

    def encode(self, items: list[bytes]) -> bytes:
        return b"".join(items)


class CsvEncoder:
    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = self.header = tuple(columns)

    def prepare(self, record: Mapping[str, Any]) -> list[str]:
        return record_to_csv_row(record, self.columns)

    def encode(self, items: list[list[str]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=_CSV_LINE_END).writerows(items)
        # CSV has no escape for a lone surrogate; replacing it beats losing the whole batch.
        return buffer.getvalue().encode("utf-8", errors="replace")


class CompressedEncoder:
    """Another encoder's batches, each written as one gzip member or zstd frame: a crash tears at most the
    last one, and resume finds where it starts."""

    def __init__(self, plain: Encoder, compression: str) -> None:
        self.plain = plain
        self.header = plain.header
        self.compression = compression

    def prepare(self, record: Mapping[str, Any]) -> Any:
        return self.plain.prepare(record)

    def encode(self, items: list[Any]) -> bytes:
        return member(self.compression, self.plain.encode(items), fast=True)


def plain_encoder(encoder: Encoder) -> Encoder:
    """The uncompressed encoder under a compressed one (items prepared by either fit both)."""
    return encoder.plain if isinstance(encoder, CompressedEncoder) else encoder


def encoder_for(
    fmt: str,
    input_columns: Sequence[str],
    with_parsed: bool,
    id_column: str | None = None,
    compression: str | None = None,
) -> Encoder:
    """The encoder of a format records are appended in (a Parquet output appends JSONL: it is converted
    at the end); a new output format plugs in here and in OUTPUT_FORMATS."""
    encoder: Encoder
    if fmt == "csv":
        encoder = CsvEncoder(csv_columns(input_columns, with_parsed, id_column))
    elif fmt in ("jsonl", "parquet"):
        encoder = JsonlEncoder()
    else:
        raise UsageError(f"unknown output format '{fmt}' (accepted: {', '.join(OUTPUT_FORMATS)})")
    return CompressedEncoder(encoder, compression) if compression is not None else encoder
