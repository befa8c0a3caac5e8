"""Compaction: an output rewritten atomically with one record per (id, model)."""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from gembulk.jsonfiles import replaced_atomically
from gembulk.outputs.resume import RecordKey, scan_output

_TEMP_SUFFIX = ".gembulk-tmp"


def _record_at(source: BinaryIO, offset: int, csv_format: bool) -> bytes:
    source.seek(offset)
    if not csv_format:
        return source.readline()
    parts: list[bytes] = []
    odd = False
    while line := source.readline():
        parts.append(line)
        odd ^= bool(line.count(b'"') & 1)
        if not odd:
            break
    return b"".join(parts)


def _rewrite(path: str, header_end: int, offsets: list[int], csv_format: bool) -> None:
    """Copy the header and the chosen records to a temp file beside path, then swap it in atomically."""
    prefix = f".{os.path.basename(path)}."
    with (
        open(path, "rb") as source,
        replaced_atomically(path, prefix=prefix, suffix=_TEMP_SUFFIX, keep_mode=True) as target,
    ):
        target.write(source.read(header_end))
        for offset in offsets:
            target.write(_record_at(source, offset, csv_format))


async def compact(path: str, fmt: str) -> int:
    """Rewrite an output with one record per (id, model): its last success, else its last record.

    Returns the count.

    Ids keep the order of their first appearance. Only an offset per id is held in memory: a first pass
    picks the records, a second copies them.
    """
    keep: dict[RecordKey, int] = {}
    succeeded: set[RecordKey] = set()

    def visit(record_id: RecordKey, ok: bool, offset: int) -> None:
        if ok:
            succeeded.add(record_id)
            keep[record_id] = offset
        elif record_id not in succeeded:
            keep[record_id] = offset

    scanner, _ = await scan_output(path, fmt, visit)
    offsets = list(keep.values())
    await asyncio.to_thread(_rewrite, path, scanner.body_start, offsets, fmt == "csv")
    return len(offsets)
