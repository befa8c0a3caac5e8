"""An existing output read back: which requests are done, what a compaction keeps (the records are read by
gembulk/outputs/scanner.py; a Parquet output's by gembulk/outputs/parquet.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from dataclasses import dataclass

import aiofiles

from gembulk.compressed import SUFFIXES, compression_of
from gembulk.errors import InputError
from gembulk.outputs.compression import complete_end, plain_head
from gembulk.outputs.scanner import Visit, has_content, scan_output, written_as
from gembulk.outputs.target import held_path

# A record is one answer of one model to one row: with several models (-m a -m b) an id has a record
# per model, so resume and compaction key records by (id, model). Keys and fingerprints are held as
# 60-bit digests, not strings: a resume of a million rows keeps two sets of small ints.


def _digest(text: str) -> int:
    raw = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(raw, "little") >> 4  # 60 bits: an int of 32 bytes instead of 48


def record_key(record_id: str, model: str) -> int:
    """The digest that stands for (id, model): one record per key stays after compaction."""
    return _digest(f"{record_id}\0{model}")


def success_key(record_id: str, model: str, fingerprint: str) -> int:
    """The digest of a success record answering the request with this fingerprint."""
    return _digest(f"{record_id}\0{model}\0{fingerprint}")


@dataclass(frozen=True)
class ExistingOutput:
    """What earlier (possibly crashed) runs left in the output file, read without changing it."""

    succeeded: set[int]  # success_key of every success record that carries a fingerprint
    keys: set[int]  # record_key of every record
    repeated: set[int]  # record_key of the keys with more than one record
    records: int  # complete records found
    end: int  # offset where the complete records end: a torn tail after it is cut before appending
    torn: bool  # the file ends in a torn (partial) last record, to be dropped
    header: tuple[str, ...] | None = None  # a CSV output's header
    # The complete records (start and end offsets) of the records --keep-order held back beside OUT when
    # a run was killed (held_path): part of the output, appended to OUT by the next run that writes it.
    held: tuple[int, int] | None = None

    def has_success(self, record_id: str, model: str, fingerprint: str) -> bool:
        return success_key(record_id, model, fingerprint) in self.succeeded


class Resume:
    """What this run makes of the existing output: which requests are done, and what compaction keeps.

    A request is done when a success record of the same (id, model) carries its fingerprint; any other
    request is sent and its record supersedes the old ones. The request passes report here (`counting`
    on the first pass only), so the end of the run knows whether a compaction is due and how many keys
    of the file this job left alone (rows deleted from the input, another model or shard).
    """

    def __init__(self, existing: ExistingOutput | None) -> None:
        self.existing = existing
        self.current: set[int] = set()  # success_key of the records resumed from, for repeated keys only
        self._superseding = False  # this run writes a key the file already holds
        self._file_keys = len(existing.keys) if existing is not None else 0
        self._job_keys_present = 0

    def done(self, record_id: str, model: str, fingerprint: str, *, counting: bool) -> bool:
        existing = self.existing
        if existing is None:
            return False
        digest = success_key(record_id, model, fingerprint)
        if digest not in existing.succeeded:
            return False
        if existing.repeated and record_key(record_id, model) in existing.repeated:
            self.current.add(digest)  # compaction must keep this one, whatever followed it
        self._job_keys_present += counting
        return True

    def sending(self, record_id: str, model: str, *, counting: bool) -> None:
        """This run writes a record for (id, model)."""
        if self.existing is not None and record_key(record_id, model) in self.existing.keys:
            self._superseding = True
            self._job_keys_present += counting

    @property
    def needs_compaction(self) -> bool:
        return self.existing is not None and bool(self.existing.repeated or self._superseding)

    @property
    def left_alone(self) -> int:
        """Keys of the file that are not part of this job (after a complete first pass)."""
        return self._file_keys - self._job_keys_present

    def release(self) -> None:
        """The request passes are over: drop the digests (about 140 MB at a million rows) before a
        compaction needs memory of its own. `current`, `needs_compaction` and `left_alone` stay."""
        if self.existing is not None:
            self.existing.keys.clear()
            self.existing.succeeded.clear()


def _suffix_for(compression: str) -> str:
    return next(suffix for suffix, name in SUFFIXES.items() if name == compression)


async def check_written_format(path: str, fmt: str, compression: str | None = None) -> None:
    """An output gembulk wrote in the other format or compression is refused with the way out, before any
    record is read as a record of this format (which would only say "not a gembulk record")."""
    async with aiofiles.open(path, "rb") as handle:
        head = await handle.read(256)
    found = compression_of(head)
    if found != compression:
        if found is not None:
            raise InputError(
                f"{path} holds {found}-compressed records; name it with {_suffix_for(found)} "
                "(e.g. out.jsonl.gz) or pass a new -o"
            )
        raise InputError(f"{path} is not {compression}-compressed; rename it or pass a new -o")
    if compression is not None:
        head = await asyncio.to_thread(plain_head, path, compression)
    written = written_as(head)
    if written is not None and written != fmt:
        raise InputError(f"{path} was written as {written}; pass --output-format {written} or a new -o")


async def load_existing(path: str, fmt: str, compression: str | None = None) -> ExistingOutput | None:
    """What an output holds (with the records --keep-order held back beside it), read without changing
    it: a torn tail is cut, and held records are appended, by the writer under the lock when it opens
    OUT. None if there is nothing."""
    held = held_path(path)
    has_output = await has_content(path)
    has_held = fmt != "parquet" and await has_content(held)
    if not (has_output or has_held):
        return None
    succeeded: set[int] = set()
    keys: set[int] = set()
    repeated: set[int] = set()

    def visit(record_id: str, model: str, fingerprint: str | None, ok: bool, offset: int) -> None:
        key = record_key(record_id, model)
        if key in keys:
            repeated.add(key)
        else:
            keys.add(key)
        if ok and fingerprint is not None:
            succeeded.add(success_key(record_id, model, fingerprint))

    if fmt == "parquet":
        from gembulk.outputs.parquet import visit_parquet

        count = await asyncio.to_thread(visit_parquet, path, visit)
        return ExistingOutput(succeeded, keys, repeated, count, 0, False)
    records, end, torn, header = 0, 0, False, None
    if has_output:
        records, end, torn, header = await _scan(path, fmt, compression, visit)
    held_range = None
    if has_held:
        await check_written_format(held, fmt)
        scanner, torn_at = await scan_output(held, fmt, visit)
        held_range = (scanner.body_start, torn_at if torn_at is not None else os.path.getsize(held))
        records += scanner.records
        if header is not None and scanner.header is not None and scanner.header != header:
            raise InputError(f"{held}: its CSV header is not {path}'s; move it away or pass --overwrite")
        header = header or scanner.header
    return ExistingOutput(succeeded, keys, repeated, records, end, torn, header, held_range)


async def _scan(
    path: str, fmt: str, compression: str | None, visit: Visit
) -> tuple[int, int, bool, tuple[str, ...] | None]:
    """Records, end of the complete records, torn or not, and header of OUT itself."""
    await check_written_format(path, fmt, compression)
    size = os.path.getsize(path)
    if compression is None:
        scanner, torn_at = await scan_output(path, fmt, visit)
        end = torn_at if torn_at is not None else size
    else:
        end = await asyncio.to_thread(complete_end, path, compression)
        scanner, _ = await scan_output(path, fmt, visit, compression, end)
    return scanner.records, end, end < size, scanner.header


async def count_outcomes(path: str, fmt: str, compression: str | None = None) -> tuple[int, int]:
    """(keys with a success record, keys with failures only) of an output: what a finished job holds."""
    succeeded: set[int] = set()
    failed: set[int] = set()

    def visit(record_id: str, model: str, fingerprint: str | None, ok: bool, offset: int) -> None:
        key = record_key(record_id, model)
        if ok:
            succeeded.add(key)
            failed.discard(key)
        elif key not in succeeded:
            failed.add(key)

    if await has_content(path):
        if fmt == "parquet":
            from gembulk.outputs.parquet import visit_parquet

            await asyncio.to_thread(visit_parquet, path, visit)
        else:
            await scan_output(path, fmt, visit, compression)
    return len(succeeded), len(failed)
