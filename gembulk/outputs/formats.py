"""Output formats: JSONL and CSV, the CSV layout of a record and back, and the encoders the writer uses."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from gembulk.errors import UsageError

OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "csv")
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
    "model",
)
USAGE_COLUMNS = ("prompt_tokens", "output_tokens", "thoughts_tokens", "total_tokens")
# With --context: usage.cached_tokens, a column after the base ones (outputs without it keep their layout).
CACHED_COLUMN = "cached_tokens"
ERROR_COLUMNS = ("error_code", "error_status", "error_message")
# RFC 4180 line ending. With "\n" the csv module leaves a field holding a bare "\r" unquoted, and such
# a file no longer parses; with "\r\n" both characters force quoting.
_CSV_LINE_END = "\r\n"


def detect_output_format(path: str, explicit: str | None) -> str:
    """The output format: the explicit one, else .csv means csv and everything else jsonl."""
    if explicit is not None:
        fmt = explicit.lower()
        if fmt not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format '{explicit}' (accepted: {', '.join(OUTPUT_FORMATS)})")
        return fmt
    return "csv" if path != "-" and path.lower().endswith(".csv") else "jsonl"


# ---------------------------------------------------------------------------------------------------
# CSV layout.


def csv_columns(
    input_columns: Sequence[str], with_parsed: bool, with_cached: bool = False
) -> tuple[str, ...]:
    """Header of a CSV output: result columns, then the input columns carried along."""
    columns = list(CSV_BASE_COLUMNS)
    if with_parsed:
        columns.append("parsed")
    if with_cached:
        columns.append(CACHED_COLUMN)
    listed = set(columns)
    columns.extend(c for c in dict.fromkeys(input_columns) if c not in listed)
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
    for column in (*USAGE_COLUMNS, CACHED_COLUMN):
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


def record_to_csv_row(record: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """The CSV cells of a record: None is empty, strings as is, anything else JSON."""
    flat = _flat_result(record)
    return [_cell(flat[c] if c in flat else record.get(c)) for c in columns]


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
        if CACHED_COLUMN in row:  # a --context run's output
            usage[CACHED_COLUMN] = _int_or_none(row[CACHED_COLUMN]) or 0
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
    for column, cell in row.items():
        if column not in record and column not in CSV_BASE_COLUMNS and (usage is None or column not in usage):
            record[column] = cell
    return record


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


def encoder_for(
    fmt: str, input_columns: Sequence[str], with_parsed: bool, with_cached: bool = False
) -> Encoder:
    """The encoder of an output format; a new output format plugs in here and in OUTPUT_FORMATS."""
    if fmt == "csv":
        return CsvEncoder(csv_columns(input_columns, with_parsed, with_cached))
    if fmt == "jsonl":
        return JsonlEncoder()
    raise UsageError(f"unknown output format '{fmt}' (accepted: {', '.join(OUTPUT_FORMATS)})")
