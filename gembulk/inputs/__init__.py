"""The input stage: a file or stdin of prompts (CSV, TSV, JSONL, JSON, TXT, Parquet; plain, gzip or zstd)
in, rows with checked ids out.

formats      which format an input is, and the parser for each (where a new format plugs in)
stream       the input's bytes in chunks, hashed, decompressed and decoded; stdin and pipes spooled
compression  gzip and zstd, told by their first bytes
parser       what every parser gives: columns, then (line numbers, field dicts) batches
delimited    CSV and TSV;  jsonl  JSON lines;  jsondoc  .json;  txt  one prompt a line;  parquet
ids          row ids: the id column checked, or the row number
source       InputSpec, open_input and scan_input: the opened input, rows streamed in one pass
staging      stage_input: where the input is read from (a spooled copy of a pipe) and its format
"""

from gembulk.inputs.formats import FORMATS, PER_ROW_FIELDS, detect_format, sniff_format
from gembulk.inputs.source import STDIN_NAME, InputSource, InputSpec, ScanResult, open_input, scan_input
from gembulk.inputs.staging import StagedInput, stage_input
from gembulk.inputs.stream import is_stream, spool_stdin, spool_stream

__all__ = [
    "FORMATS",
    "PER_ROW_FIELDS",
    "STDIN_NAME",
    "InputSource",
    "InputSpec",
    "ScanResult",
    "StagedInput",
    "detect_format",
    "is_stream",
    "open_input",
    "scan_input",
    "sniff_format",
    "spool_stdin",
    "spool_stream",
    "stage_input",
]
