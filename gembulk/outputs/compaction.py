"""Compaction: an output rewritten atomically with one record per (id, model), in input order with
--keep-order, a compressed one as a single stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from array import array
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from gembulk.filemodes import open_private
from gembulk.jsonfiles import replaced_atomically
from gembulk.outputs.compression import CompressingFile, complete_end, decompress_to
from gembulk.outputs.resume import record_key, success_key
from gembulk.outputs.scanner import scan_output
from gembulk.outputs.target import TEMP_SUFFIX, temp_prefix

# Which record of a key is kept: the highest rank, the later one on a tie.
_FAILURE, _SUCCESS, _CURRENT, _THIS_RUN = range(4)


@dataclass(frozen=True)
class CompactionPlan:
    """What the run that compacts knows: where its own records start, and which older successes it
    resumed from (for the keys the file held more than once; every other key has one record anyway)."""

    boundary: int = -1  # records at or after this offset were written by this run; -1: none
    current: frozenset[int] | set[int] = field(default_factory=frozenset)  # success_key values


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


def _rewrite(
    source_path: str,
    path: str,
    header_end: int,
    offsets: array[int],
    csv_format: bool,
    compression: str | None,
) -> None:
    """Copy the header and the chosen records to a temp file beside path, then swap it in atomically."""
    with (
        open(source_path, "rb") as source,
        replaced_atomically(path, prefix=temp_prefix(path), suffix=TEMP_SUFFIX, keep_mode=True) as raw,
    ):
        target: Any = CompressingFile(raw, compression) if compression is not None else raw
        target.write(source.read(header_end))
        for offset in offsets:
            target.write(_record_at(source, offset, csv_format))
        if compression is not None:
            target.close()


def _plain_copy(path: str, compression: str, boundary: int) -> tuple[str, int]:
    """A compressed output's records, decompressed into a temp file beside it (compaction seeks in them),
    and where this run's records start in that copy (-1: none)."""
    directory = os.path.dirname(os.path.abspath(path))
    copy = os.path.join(directory, f"{temp_prefix(path)}{os.urandom(6).hex()}{TEMP_SUFFIX}")
    try:
        with open_private(copy) as handle:
            boundaries = decompress_to(path, compression, complete_end(path, compression), handle)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(copy)
        raise
    return copy, boundaries.get(boundary, -1) if boundary >= 0 else -1


async def compact(
    path: str,
    fmt: str,
    plan: CompactionPlan | None = None,
    *,
    compression: str | None = None,
    order: AsyncIterator[int] | None = None,
    rewrite: bool = False,
) -> int:
    """Rewrite an output with one record per (id, model), and return the count. Per key it keeps the
    record this run wrote, else the success whose request this run resumed from (not always the last:
    success, then a failure after an edit, then the edit undone), else the last success, else the last
    record. Keys no longer in the job keep their best record too: paid answers are never dropped.

    Keys keep the order of their first appearance; with `order` (the record keys in input order) the
    keys it gives come first in its order, the others after them as they were. A file already as it
    should be is left alone unless `rewrite` (a compressed output is rewritten as one stream). Only a
    digest and an offset per key are held in memory: a first pass picks the records, a second copies.
    """
    plan = plan or CompactionPlan()
    source, boundary = path, plan.boundary
    if compression is not None:
        source, boundary = await asyncio.to_thread(_plain_copy, path, compression, plan.boundary)
    try:
        kept, header_end, records = await _choose(source, fmt, plan, boundary, order)
        in_place = len(kept) == records and all(a < b for a, b in itertools.pairwise(kept))
        if rewrite or not in_place:
            await asyncio.to_thread(_rewrite, source, path, header_end, kept, fmt == "csv", compression)
    finally:
        if source != path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)
    return len(kept)


async def _choose(
    path: str, fmt: str, plan: CompactionPlan, boundary: int, order: AsyncIterator[int] | None
) -> tuple[array[int], int, int]:
    """The offsets of the records to keep, in the order to write them; the header's end; the records."""
    start_of_run = boundary if boundary >= 0 else float("inf")
    current = plan.current
    keep: dict[int, int] = {}  # record_key -> offset * 4 + rank

    def visit(record_id: str, model: str, fingerprint: str | None, ok: bool, offset: int) -> None:
        if offset >= start_of_run:
            rank = _THIS_RUN
        elif not ok:
            rank = _FAILURE
        elif current and fingerprint is not None and success_key(record_id, model, fingerprint) in current:
            rank = _CURRENT
        else:
            rank = _SUCCESS
        key = record_key(record_id, model)
        kept = keep.get(key)
        if kept is None or rank >= kept & 3:
            keep[key] = offset * 4 + rank

    scanner, _ = await scan_output(path, fmt, visit)
    offsets = array("q")
    if order is not None:
        async for key in order:
            packed = keep.pop(key, None)
            if packed is not None:
                offsets.append(packed >> 2)
    offsets.extend(packed >> 2 for packed in keep.values())
    return offsets, scanner.body_start, scanner.records
