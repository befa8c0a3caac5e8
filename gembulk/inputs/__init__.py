"""The input stage: a file or stdin of prompts (CSV, TSV, JSONL, TXT) in, rows with checked ids out.

formats    which format an input is, and the parser for each (where a new format plugs in)
stream     the input's bytes in chunks, hashed and decoded; stdin spooled to a file
parser     what every parser gives: columns, then (line numbers, field dicts) batches
delimited  CSV and TSV;  jsonl  JSON lines;  txt  one prompt a line
ids        row ids: the id column checked, or the row number
source     InputSpec, open_input and scan_input: the opened input, rows streamed in one pass
"""

from gembulk.inputs.formats import FORMATS, detect_format
from gembulk.inputs.source import STDIN_NAME, InputSource, InputSpec, ScanResult, open_input, scan_input
from gembulk.inputs.stream import spool_stdin

__all__ = [
    "FORMATS",
    "STDIN_NAME",
    "InputSource",
    "InputSpec",
    "ScanResult",
    "detect_format",
    "open_input",
    "scan_input",
    "spool_stdin",
]
