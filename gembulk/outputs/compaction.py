"""Compaction: an output rewritten atomically with one record per (id, model)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import BinaryIO

from gembulk.jsonfiles import replaced_atomically
from gembulk.outputs.resume import record_key, scan_output, success_key
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


def _rewrite(path: str, header_end: int, offsets: list[int], csv_format: bool) -> None:
    """Copy the header and the chosen records to a temp file beside path, then swap it in atomically."""
    with (
        open(path, "rb") as source,
        replaced_atomically(path, prefix=temp_prefix(path), suffix=TEMP_SUFFIX, keep_mode=True) as target,
    ):
        target.write(source.read(header_end))
        for offset in offsets:
            target.write(_record_at(source, offset, csv_format))


async def compact(path: str, fmt: str, plan: CompactionPlan | None = None) -> int:
    """Rewrite an output with one record per (id, model), and return the count. Per key it keeps the
    record this run wrote, else the success whose request this run resumed from (not always the last:
    success, then a failure after an edit, then the edit undone), else the last success, else the last
    record. Keys no longer in the job keep their best record too: paid answers are never dropped.

    Keys keep the order of their first appearance. Only a digest and an offset per key are held in
    memory: a first pass picks the records, a second copies them.
    """
    plan = plan or CompactionPlan()
    boundary = plan.boundary if plan.boundary >= 0 else float("inf")
    current = plan.current
    keep: dict[int, int] = {}  # record_key -> offset * 4 + rank

    def visit(record_id: str, model: str, fingerprint: str | None, ok: bool, offset: int) -> None:
        if offset >= boundary:
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
    offsets = [packed >> 2 for packed in keep.values()]
    await asyncio.to_thread(_rewrite, path, scanner.body_start, offsets, fmt == "csv")
    return len(offsets)
