"""The output stage: result records encoded (JSONL, CSV; gzip or zstd; Parquet at the end), written to a file,
a stream or stdout, in input order on request, read back to resume.

formats      the output formats: detection, the column layout of a record, the encoders
compression  gzip and zstd: a member per written batch, members read back, one stream for rewrites
sinks        where encoded bytes go: a file (paced fsync), a stream, or stdout
writer       ResultWriter and open_writer: records in, batched writes out
target       what -o names (stdout, a stream, a file), the checks before a run, the files beside OUT
layout       how OUT is written (compression, the file records go to) and what it holds, before a run
lock         one gembulk per output: the lock file beside OUT
run_output   OUT as one run writes it: opened at the first record, appended, created or replaced
reorder      --keep-order: records out in sequence, at most N held, the request pass waiting for room
held         the records --keep-order holds, kept beside OUT until written, added by the next run
scanner      an output's records read back: lines (plain or decompressed), records checked, torn tail
resume       an existing output read back: which requests are done
compaction   an output rewritten with one record per (id, model), in input order on request
parquet      Parquet OUT (pyarrow, optional): records kept as JSONL, converted at the end; read back
"""

from gembulk.errors import OutputClosedError
from gembulk.outputs.compaction import CompactionPlan, compact
from gembulk.outputs.formats import (
    CSV_BASE_COLUMNS,
    OUTPUT_FORMATS,
    csv_columns,
    csv_row_to_record,
    detect_output_format,
    encoder_for,
    record_to_csv_row,
)
from gembulk.outputs.lock import output_lock
from gembulk.outputs.resume import ExistingOutput, Resume, count_outcomes, load_existing
from gembulk.outputs.run_output import RunOutput
from gembulk.outputs.target import (
    OutputKind,
    OutputTarget,
    check_output,
    output_target,
    remove_leftovers,
    remove_legacy_sidecar,
)
from gembulk.outputs.writer import ResultWriter, check_csv_header, open_writer

__all__ = [
    "CSV_BASE_COLUMNS",
    "OUTPUT_FORMATS",
    "CompactionPlan",
    "ExistingOutput",
    "OutputClosedError",
    "OutputKind",
    "OutputTarget",
    "ResultWriter",
    "Resume",
    "RunOutput",
    "check_csv_header",
    "check_output",
    "compact",
    "count_outcomes",
    "csv_columns",
    "csv_row_to_record",
    "detect_output_format",
    "encoder_for",
    "load_existing",
    "open_writer",
    "output_lock",
    "output_target",
    "record_to_csv_row",
    "remove_leftovers",
    "remove_legacy_sidecar",
]
