"""Parquet output through pyarrow (the optional extra gembulk[parquet], imported only here). While runs add
records they are kept as JSONL beside OUT (OUT.gembulk-partial.jsonl, resumed like any JSONL output); the
run that completes converts them into OUT in row groups. Columns are the CSV output's, typed: token counts
and error codes int64, text string; `parsed` is JSON text, and so is an input column whose values are not
all of one scalar type (objects, lists, mixtures), listed in the file's metadata."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, BinaryIO

from gembulk.errors import InputError, UsageError
from gembulk.filemodes import new_output_file
from gembulk.jsonfiles import fsync_directory
from gembulk.outputs.formats import (
    CSV_BASE_COLUMNS,
    CSV_ONLY_COLUMNS,
    ERROR_COLUMNS,
    FINGERPRINT_COLUMN,
    INPUT_PREFIX,
    USAGE_COLUMNS,
    JsonlEncoder,
    place_input_fields,
    record_to_row,
)
from gembulk.outputs.scanner import Visit
from gembulk.outputs.target import TEMP_SUFFIX, temp_prefix
from gembulk.records import RESERVED_KEYS

PARQUET_MISSING = "writing Parquet needs pyarrow: pip install 'gembulk[parquet]' (or write .jsonl or .csv)"
ROW_GROUP_ROWS = 10_000  # rows per row group: bounded memory while converting, and readers can skip groups
METADATA_KEY = b"gembulk"  # {"json_columns": [...]}: the columns that hold JSON text
_INTS = frozenset(("error_code", *USAGE_COLUMNS))
_JSON_TEXT = frozenset(("parsed",))
_INT64 = (-(2**63), 2**63 - 1)


def check_available() -> None:
    """Refuse at the start, naming the extra to install, when pyarrow is missing."""
    _pyarrow()


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UsageError(PARQUET_MISSING) from None
    return pyarrow, pyarrow.parquet


# ---------------------------------------------------------------------------------------------------
# Types of the input columns: one scalar type, else JSON text.


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if _INT64[0] <= value <= _INT64[1] else "json"
    if isinstance(value, float):
        return "float"
    return "string" if isinstance(value, str) else "json"


def _merge(kind: str, other: str) -> str:
    if kind in ("null", other):
        return other
    if other == "null":
        return kind
    return "float" if {kind, other} == {"int", "float"} else "json"


def _records(path: str) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _columns_of(record: Mapping[str, Any]) -> Iterator[str]:
    """The input columns a record's fields take in the column layout."""
    for key, value in record.items():
        if key == "input" and isinstance(value, dict):
            yield from (INPUT_PREFIX + name for name in value)
        elif key not in RESERVED_KEYS:
            yield INPUT_PREFIX + key if key in CSV_ONLY_COLUMNS else key


def _layout(path: str, columns: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The columns (this run's, then any other input field a record of the file has) and the kind of
    each input column, from one pass over the records."""
    known = list(columns)
    seen = set(known)
    inputs = [column for column in known if _is_input(column)]
    kinds: dict[str, str] = {}
    for record in _records(path):
        for column in _columns_of(record):
            if column not in seen:
                seen.add(column)
                known.append(column)
                inputs.append(column)
        for column, value in zip(inputs, record_to_row(record, inputs), strict=True):
            kinds[column] = _merge(kinds.get(column, "null"), _kind(value))
    return known, kinds


def _is_input(column: str) -> bool:
    return column not in CSV_BASE_COLUMNS and column not in _JSON_TEXT and column != FINGERPRINT_COLUMN


def _schema(pa: Any, columns: Sequence[str], kinds: Mapping[str, str]) -> Any:
    types = {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    fields = []
    for column in columns:
        kind = "int" if column in _INTS else kinds.get(column, "string")
        fields.append(pa.field(column, types.get(kind, pa.string())))
    json_columns = sorted(column for column, kind in kinds.items() if kind == "json")
    return pa.schema(fields, metadata={METADATA_KEY: json.dumps({"json_columns": json_columns})})


def _cell(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return float(value) if kind == "float" else value


# ---------------------------------------------------------------------------------------------------
# JSONL of records -> Parquet, and back.


def convert(records: str, output: str, columns: Sequence[str]) -> int:
    """Write the records of the JSONL file `records` to `output` as Parquet (a temp file beside it,
    renamed over it once durable); returns the row count."""
    pa, pq = _pyarrow()
    layout, kinds = _layout(records, columns)
    schema = _schema(pa, layout, kinds)
    cell_kinds = [kinds.get(column, "string") for column in layout]
    directory = os.path.dirname(os.path.abspath(output))
    temp = new_output_file(directory, temp_prefix(output), TEMP_SUFFIX, like=output)
    count = 0
    try:
        with pq.ParquetWriter(temp, schema) as writer:
            batch: list[list[Any]] = []
            for record in _records(records):
                row = record_to_row(record, layout)
                batch.append([_cell(value, kind) for value, kind in zip(row, cell_kinds, strict=True)])
                if len(batch) >= ROW_GROUP_ROWS:
                    writer.write_table(_table(pa, schema, batch))
                    count += len(batch)
                    batch = []
            if batch or not count:
                writer.write_table(_table(pa, schema, batch))
                count += len(batch)
        with open(temp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    fsync_directory(directory)
    return count


def _table(pa: Any, schema: Any, rows: list[list[Any]]) -> Any:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    arrays = [pa.array(values, type=field.type) for values, field in zip(columns, schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=schema)


def _row_groups(path: str, wanted: Sequence[str] | None = None) -> Iterator[tuple[list[dict[str, Any]], Any]]:
    """Each row group's rows as dicts (the `wanted` columns the file has, else all), with the file's
    schema; a file that is not a Parquet output is an error."""
    _, pq = _pyarrow()
    try:
        parquet = pq.ParquetFile(path)
        schema = parquet.schema_arrow
        if "id" not in schema.names:
            raise InputError(f"{path}: not a Parquet output gembulk wrote (no id column)")
        columns = None if wanted is None else [column for column in wanted if column in schema.names]
        for index in range(parquet.num_row_groups):
            yield parquet.read_row_group(index, columns=columns).to_pylist(), schema
    except (OSError, ValueError, KeyError) as exc:  # pyarrow.ArrowInvalid is a ValueError
        raise InputError(f"{path}: not a Parquet output gembulk can resume ({exc})") from None


def _json_columns(schema: Any) -> frozenset[str]:
    metadata = schema.metadata or {}
    try:
        return frozenset(json.loads(metadata.get(METADATA_KEY, b"{}")).get("json_columns", ()))
    except (ValueError, AttributeError):
        return frozenset()


def row_to_record(row: Mapping[str, Any], json_columns: frozenset[str] = frozenset()) -> dict[str, Any]:
    """A record from a Parquet row: the inverse of the conversion."""
    failed = any(row.get(column) not in (None, "") for column in ERROR_COLUMNS)
    error = None
    if failed:
        error = {
            "code": row.get("error_code"),
            "status": row.get("error_status") or "ERROR",
            "message": row.get("error_message") or "",
        }
    usage = None
    if any(row.get(column) is not None for column in USAGE_COLUMNS):
        usage = {column: row.get(column) or 0 for column in USAGE_COLUMNS}
    record: dict[str, Any] = {
        "id": row["id"],
        "response": row.get("response"),
        "error": error,
        "finish_reason": row.get("finish_reason"),
        "usage": usage,
        "model": row.get("model"),
    }
    if "parsed" in row:
        record["parsed"] = None if row["parsed"] is None else json.loads(row["parsed"])
    if FINGERPRINT_COLUMN in row:
        record[FINGERPRINT_COLUMN] = row[FINGERPRINT_COLUMN] or None
    rest = {
        column: json.loads(value) if column in json_columns and value is not None else value
        for column, value in row.items()
        if column not in record and column not in CSV_BASE_COLUMNS
    }
    place_input_fields(record, rest)
    return record


def write_records(path: str, target: BinaryIO) -> None:
    """The records of a Parquet output, as JSONL lines into `target` (to resume it)."""
    encoder = JsonlEncoder()
    for rows, schema in _row_groups(path):
        json_columns = _json_columns(schema)
        target.write(b"".join(encoder.prepare(row_to_record(row, json_columns)) for row in rows))


def visit_parquet(path: str, visit: Visit) -> int:
    """Visit each record of a Parquet output as resume does (offset: the row's index); returns the count."""
    count = 0
    for rows, _ in _row_groups(path, ["id", "model", FINGERPRINT_COLUMN, *ERROR_COLUMNS]):
        for row in rows:
            ok = not any(row.get(column) not in (None, "") for column in ERROR_COLUMNS)
            fingerprint = row.get(FINGERPRINT_COLUMN) or None
            visit(str(row["id"]), str(row.get("model") or ""), fingerprint, ok, count)
            count += 1
    return count
