"""Parquet inputs through pyarrow (the `parquet` extra, imported on use): read batch by batch, each value
made into what JSON holds (so it renders in a template and rides along in the record)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import decimal
import math
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from gembulk.errors import InputError, UsageError
from gembulk.inputs.parser import Batch

PYARROW_MISSING = "reading Parquet needs pyarrow: pip install 'gembulk[parquet]'"

# Rows per batch handed out: small enough that a batch of Python dicts stays in the megabytes.
BATCH_ROWS = 8192
# Column data is read through a buffer of this size instead of whole column chunks, so a file written
# as one row group of a million rows (pandas' default) is not read into memory at once.
_READ_BUFFER = 1024 * 1024


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise UsageError(PYARROW_MISSING) from None
    if "ARROW_DEFAULT_MEMORY_POOL" not in os.environ:
        # pyarrow's default allocator (mimalloc) keeps what each reading thread freed: ~60 MB more at a
        # million rows than the C allocator, for no speed this reader would notice.
        pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    return pyarrow, pyarrow.parquet


def jsonish(value: Any) -> Any:
    """A value as JSON holds it: dates and times in ISO 8601, decimals as exact strings, durations in
    seconds, NaN as null, bytes as UTF-8 text (base64 when they are not text), map entries as an object."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): jsonish(item) for key, item in value.items()}
    if isinstance(value, list):
        if value and all(isinstance(item, tuple) and len(item) == 2 for item in value):
            return {str(key): jsonish(item) for key, item in value}  # a map column's entries
        return [jsonish(item) for item in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(value).decode("ascii")
    return str(value)


class ParquetParser:
    """A Parquet file read BATCH_ROWS rows at a time; a row's number is its position (there are no lines)."""

    def __init__(self, path: str, name: str, compression: str | None) -> None:
        self._path = path
        self._name = name
        self._compression = compression
        self._file: Any = None
        self.columns: tuple[str, ...] = ()
        self.header_line = 1

    async def start(self) -> None:
        if self._compression is not None:
            raise InputError(
                f"{self._name}: a {self._compression}-compressed Parquet file; Parquet compresses its own "
                "pages and is read from its end, so decompress it first"
            )
        pa, pq = _pyarrow()
        try:
            self._file = await asyncio.to_thread(
                pq.ParquetFile, self._path, buffer_size=_READ_BUFFER, pre_buffer=False
            )
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{self._name}: not a readable Parquet file ({exc})") from None
        names = tuple(self._file.schema_arrow.names)
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise InputError(f"{self._name}: duplicate column name '{repeated[0]}' in the Parquet schema")
        self.columns = names

    async def batches(self) -> AsyncIterator[Batch]:
        assert self._file is not None, "start() first"
        pa, _ = _pyarrow()
        record_batches = self._file.iter_batches(batch_size=BATCH_ROWS, use_threads=False)
        converted = _converted(record_batches)
        done = 0
        while True:
            try:
                rows = await asyncio.to_thread(next, converted, None)
            except (pa.ArrowException, OSError) as exc:
                raise InputError(f"{self._name}: unreadable Parquet data after row {done} ({exc})") from None
            if rows is None:
                return
            yield list(range(done + 1, done + len(rows) + 1)), rows
            done += len(rows)


def _converted(record_batches: Iterator[Any]) -> Iterator[list[dict[str, Any]]]:
    for batch in record_batches:
        rows = batch.to_pylist()
        for name, kind in zip(batch.schema.names, batch.schema.types, strict=True):
            if _needs_conversion(kind):
                for row in rows:
                    row[name] = jsonish(row[name])
        yield rows


def _needs_conversion(kind: Any) -> bool:
    """Whether to_pylist gives values JSON cannot hold as they are (the common columns need no work;
    floats do, for NaN)."""
    import pyarrow.types as types

    if types.is_dictionary(kind):
        kind = kind.value_type
    plain = (
        types.is_null(kind)
        or types.is_boolean(kind)
        or types.is_integer(kind)
        or types.is_string(kind)
        or types.is_large_string(kind)
    )
    return not plain
