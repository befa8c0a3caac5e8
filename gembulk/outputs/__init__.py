"""The output stage: result records encoded (JSONL, CSV), written to a file or stdout, read back to resume.

formats   the output formats: detection, the CSV layout of a record, the encoders
sinks     where encoded bytes go: a file (paced fsync) or stdout
writer    ResultWriter and open_writer: records in, batched writes out
resume    an existing output read back: records checked, a torn tail cut, what is done
compaction  an output rewritten with one record per (id, model)
"""

from gembulk.outputs.compaction import compact
from gembulk.outputs.formats import (
    CSV_BASE_COLUMNS,
    OUTPUT_FORMATS,
    csv_columns,
    csv_row_to_record,
    detect_output_format,
    record_to_csv_row,
)
from gembulk.outputs.resume import ExistingOutput, RecordKey, load_existing
from gembulk.outputs.sinks import OutputClosedError
from gembulk.outputs.writer import ResultWriter, open_writer

__all__ = [
    "CSV_BASE_COLUMNS",
    "OUTPUT_FORMATS",
    "ExistingOutput",
    "OutputClosedError",
    "RecordKey",
    "ResultWriter",
    "compact",
    "csv_columns",
    "csv_row_to_record",
    "detect_output_format",
    "load_existing",
    "open_writer",
    "record_to_csv_row",
]
