"""The output stage: result records encoded (JSONL, CSV), written to a file, a stream or stdout, read back to
resume.

formats     the output formats: detection, the CSV layout of a record, the encoders
sinks       where encoded bytes go: a file (paced fsync), a stream, or stdout
writer      ResultWriter and open_writer: records in, batched writes out
target      what -o names (stdout, a stream, a file), the checks before a run, temp files and leftovers
lock        one gembulk per output: the lock file beside OUT
run_output  OUT as one run writes it: opened at the first record, appended, created or replaced
resume      an existing output read back: records checked, a torn tail found, which requests are done
compaction  an output rewritten with one record per (id, model)
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
