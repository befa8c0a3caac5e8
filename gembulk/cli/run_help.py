"""The words of `gembulk run --help`: what it does, its panels, worked examples, the longer option texts."""

from __future__ import annotations

from gembulk.cli.common import EXIT_CODES_HELP

HELP = "Run every row of INPUT (a file or - for stdin) through the model.\n" + EXIT_CODES_HELP

# "\b" keeps a paragraph's lines as written (click rewraps every other paragraph).
EXAMPLES = """\
Examples:

\b
  # every row through the default model; after a crash or Ctrl-C,
  # the same command again finishes the rest
  gembulk run reviews.csv -t "Summarize: {text}" -o summaries.jsonl
  # a pipe in, records out on stdout in input order, one JSON line each
  zcat prompts.txt.gz | gembulk run - --input-format txt --keep-order
  # under 150 requests a minute, stopping before $20 is spent
  gembulk run questions.jsonl -m gemini-2.5-pro --rpm 150 --max-cost 20
  # check input, template and schema, show the first prompts, send nothing
  gembulk run items.csv -t "Label: {title}" --json-schema s.json --dry-run
  # one long document shared by every row, cached once when that pays
  gembulk run tickets.csv -t "Classify: {text}" --context policy.pdf
  # each row's image (a path, an http(s) URL or a files/ name) sent along
  gembulk run photos.csv -t "Describe {caption}." --attach photo -o d.jsonl
  # the Batch API at half the price; later: gembulk batch fetch out.jsonl
  gembulk run big.csv -t "{question}" -o out.jsonl --batch --detach
"""

INPUT = "Input"
PROMPT = "Prompt"
MODEL = "Model and request"
SPEED = "Speed and quota"
OUTPUT = "Output"
BATCH = "Batch API"
MEDIA = "Media"
CONTEXT = "Shared context"
COST = "Cost"
CACHE = "Cache and sharding"
CONNECTION = "Connection and debug"

OUTPUT_HELP = "Output file (resumable) or - for stdout; a name ending in .gz or .zst is compressed."
OUTPUT_FORMAT_HELP = (
    "jsonl, csv or parquet (default: from OUT's name, else jsonl); parquet needs gembulk[parquet] "
    "and -o FILE."
)
KEEP_ORDER_HELP = (
    "Write records in input order (row, then -m order), as they stream. A record finished ahead of a "
    "slower or retried row is held until that row is written: at most --order-buffer records, which "
    "bounds the memory this takes; when the buffer is full no new row is sent until the slow one is "
    "done. With --batch (and Parquet) OUT is put in order when the run completes."
)
ORDER_BUFFER_HELP = (
    "--keep-order: records held at most while a slower row is outstanding (memory: about N records)."
)
