"""How OUT is written, decided before anything is sent: its compression, the file records are appended to
(a Parquet OUT's JSONL beside it), and what it already holds."""

from __future__ import annotations

import os
from collections.abc import Sequence

from gembulk.errors import UsageError
from gembulk.outputs.compression import check_available, output_compression
from gembulk.outputs.resume import ExistingOutput, load_existing
from gembulk.outputs.target import OutputKind, OutputTarget, partial_path
from gembulk.outputs.writer import check_csv_header


def output_layout(
    output: str, target: OutputTarget, fmt: str, *, input_path: str, keep_order: bool, batch: bool
) -> tuple[str | None, OutputTarget | None]:
    """OUT's compression, and for Parquet the file records are appended to; refused at once (exit 2)
    when OUT cannot be written so (the input itself, a package missing, a stream, options that cannot
    apply)."""
    if (
        target.resumable
        and input_path != "-"
        and os.path.exists(output)
        and os.path.samefile(output, input_path)
    ):
        raise UsageError(f"-o {output} is the input file; choose another output path")
    compression = output_compression(output)
    check_available(compression)
    if keep_order and batch and not target.resumable:
        raise UsageError(
            "--keep-order with --batch needs -o FILE: the records are put in input order once the "
            "batch is collected"
        )
    if fmt != "parquet":
        return compression, None
    from gembulk.outputs.parquet import check_available as check_parquet

    if compression is not None:
        raise UsageError(f"-o {output}: Parquet compresses its own columns; drop the .gz/.zst")
    if not target.resumable:
        raise UsageError(
            "Parquet output needs -o FILE.parquet: it cannot be streamed (its index is written last)"
        )
    check_parquet()
    return None, OutputTarget(partial_path(output), OutputKind.FILE)


async def existing_output(
    output: str,
    records: OutputTarget | None,
    fmt: str,
    compression: str | None,
    csv_columns: Sequence[str],
) -> ExistingOutput | None:
    """What a file OUT holds already (its torn tail and held records included); for Parquet, the JSONL
    of records beside it when a run left one, else the Parquet file itself."""
    if fmt == "parquet":
        assert records is not None
        if os.path.exists(records.path):
            return await load_existing(records.path, "jsonl")
        return await load_existing(output, "parquet") if os.path.exists(output) else None
    existing = await load_existing(output, fmt, compression)
    if existing is not None and fmt == "csv":
        check_csv_header(output, existing.header, csv_columns)
    return existing
