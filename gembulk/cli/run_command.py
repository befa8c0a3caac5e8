"""`gembulk run`: its options, declared panel by panel, and the command that hands them to the run."""

from __future__ import annotations

from typing import Annotated

import typer

from gembulk.cli.common import API_KEY_FILE_HELP, API_KEY_HELP, print_error, setup_logging
from gembulk.cli.run_help import (
    BATCH,
    CACHE,
    CONNECTION,
    CONTEXT,
    COST,
    INPUT,
    KEEP_ORDER_HELP,
    MEDIA,
    MODEL,
    ORDER_BUFFER_HELP,
    OUTPUT,
    OUTPUT_FORMAT_HELP,
    OUTPUT_HELP,
    PROMPT,
    SPEED,
)
from gembulk.settings import (
    DEFAULT_BATCH_MAX_ROWS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    DEFAULT_ORDER_BUFFER,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_POLL_MAX_INTERVAL,
    DEFAULT_TIMEOUT,
    ContextCache,
    Fallback,
    ProgressMode,
)
from gembulk.startup import long_lived_objects


def _opt(*names: str, panel: str, help: str | None = None, **extra: object) -> typer.models.OptionInfo:
    return typer.Option(*names, help=help, rich_help_panel=panel, **extra)  # type: ignore[arg-type]


InputArg = Annotated[
    str,
    typer.Argument(
        help="CSV, TSV, JSONL, JSON, TXT or Parquet file of prompts (.gz/.zst too), or - for stdin."
    ),
]
InputFormatOpt = Annotated[
    str | None,
    _opt(
        "--input-format",
        panel=INPUT,
        help="csv, tsv, jsonl, json, txt or parquet (default: from the extension; for stdin and pipes, JSON "
        "or Parquet told from the content).",
    ),
]
DelimiterOpt = Annotated[
    str | None,
    _opt(
        "--delimiter",
        panel=INPUT,
        metavar="CHAR",
        help="CSV field delimiter, e.g. ';' or tab (default: the one of , ; tab | in the header line).",
    ),
]
IdColumnOpt = Annotated[
    str | None,
    _opt("--id-column", panel=INPUT, help="Column holding the row id (default: id, else row number)."),
]

TemplateOpt = Annotated[
    str | None, _opt("-t", "--template", panel=PROMPT, help="Prompt template with {column} placeholders.")
]
TemplateFileOpt = Annotated[
    str | None, _opt("--template-file", panel=PROMPT, help="Read the template from a file.")
]
PromptColumnOpt = Annotated[
    str | None, _opt("--prompt-column", panel=PROMPT, help="Column holding the prompt (default: prompt).")
]
SystemOpt = Annotated[str | None, _opt("-s", "--system", panel=PROMPT, help="System instruction.")]

ModelOpt = Annotated[
    list[str] | None,
    _opt(
        "-m",
        "--model",
        panel=MODEL,
        help=f"Gemini model (default {DEFAULT_MODEL}); repeat it to run every row on each.",
    ),
]
TemperatureOpt = Annotated[float | None, _opt("--temperature", panel=MODEL, help="0 to 2, the API's range.")]
MaxOutputTokensOpt = Annotated[
    int | None,
    _opt(
        "--max-output-tokens",
        panel=MODEL,
        help="Bound each answer (thinking included), up to the model's output limit; "
        "with --max-cost, also what is reserved for each request.",
    ),
]
JsonSchemaOpt = Annotated[
    str | None,
    _opt("--json-schema", panel=MODEL, help="JSON schema file; answers are JSON, parsed into 'parsed'."),
]
TimeoutOpt = Annotated[float, _opt("--timeout", panel=MODEL, help="Seconds to wait for one answer.")]

ConcurrencyOpt = Annotated[
    int,
    _opt("-c", "--concurrency", panel=SPEED, help="Most requests in flight (adapts below it on 429/503)."),
]
RpmOpt = Annotated[float | None, _opt("--rpm", panel=SPEED, help="Requests per minute to stay under.")]
TpmOpt = Annotated[float | None, _opt("--tpm", panel=SPEED, help="Input tokens per minute to stay under.")]
MaxAttemptsOpt = Annotated[int, _opt("--max-attempts", panel=SPEED, help="Attempts per row, first included.")]
MaxRetryTimeOpt = Annotated[
    float, _opt("--max-retry-time", panel=SPEED, help="Give up retrying a row after this many seconds.")
]

OutputOpt = Annotated[str, _opt("-o", "--output", panel=OUTPUT, help=OUTPUT_HELP)]
OutputFormatOpt = Annotated[str | None, _opt("--output-format", panel=OUTPUT, help=OUTPUT_FORMAT_HELP)]
KeepOrderOpt = Annotated[bool, _opt("--keep-order", panel=OUTPUT, help=KEEP_ORDER_HELP)]
OrderBufferOpt = Annotated[int, _opt("--order-buffer", panel=OUTPUT, metavar="N", help=ORDER_BUFFER_HELP)]
OverwriteOpt = Annotated[
    bool, _opt("--overwrite", panel=OUTPUT, help="Replace an existing output instead of resuming it.")
]
ProgressOpt = Annotated[ProgressMode, _opt("--progress", panel=OUTPUT, help="auto, bar, plain, json or off.")]
QuietOpt = Annotated[bool, _opt("-q", "--quiet", panel=OUTPUT, help="No final summary.")]
DryRunOpt = Annotated[
    bool,
    _opt("--dry-run", panel=OUTPUT, help="Check the input, show the first prompts, send nothing."),
]

BatchOpt = Annotated[
    bool,
    _opt(
        "--batch",
        panel=BATCH,
        help="Send the rows through the Batch API: half the price, answers within 24 h, no per-minute "
        'quota. Same records as online, plus "mode": "batch".',
    ),
]
DetachOpt = Annotated[
    bool,
    _opt(
        "--detach",
        panel=BATCH,
        help="With --batch: submit, write OUT.gembulk-batch.json, print the job names on stdout and "
        "exit 0; collect later with `gembulk batch fetch`.",
    ),
]
FallbackOpt = Annotated[
    Fallback,
    _opt(
        "--fallback",
        panel=BATCH,
        help="With --batch: 'online' finishes the rows of a FAILED, EXPIRED or CANCELLED job, and rows "
        "with a transient error line (429, 5xx), with the online scheduler in the same run.",
    ),
]
KeepFilesOpt = Annotated[
    bool,
    _opt(
        "--keep-files",
        panel=BATCH,
        help="With --batch: keep the uploaded input and the result files after the fetch.",
    ),
]
BatchMaxRowsOpt = Annotated[
    int,
    _opt(
        "--batch-max-rows", panel=BATCH, help="With --batch: most rows in one job; more rows make more jobs."
    ),
]
BatchMaxBytesOpt = Annotated[
    str,
    _opt(
        "--batch-max-bytes",
        panel=BATCH,
        help="With --batch: largest input file of one job, e.g. 500MB (the service takes up to 2 GB).",
    ),
]
BatchNameOpt = Annotated[
    str | None,
    _opt("--batch-name", panel=BATCH, help="With --batch: job display name (default: gembulk OUT-NAME)."),
]
PollIntervalOpt = Annotated[
    float,
    _opt(
        "--poll-interval", panel=BATCH, help="With --batch: seconds before the first poll; doubles each time."
    ),
]
PollMaxIntervalOpt = Annotated[
    float, _opt("--poll-max-interval", panel=BATCH, help="With --batch: longest wait between two polls.")
]

AttachOpt = Annotated[
    list[str] | None,
    _opt(
        "--attach",
        panel=MEDIA,
        metavar="COLUMN",
        help="Column whose values are media to send with the prompt: a local path, an http(s) URL or "
        "a files/… name. Repeatable.",
    ),
]
InlineLimitOpt = Annotated[
    str,
    _opt(
        "--inline-limit",
        panel=MEDIA,
        help="Attachment bytes sent inline per request; larger ones are uploaded through the Files API.",
    ),
]
DownloadsOpt = Annotated[
    int | None,
    _opt(
        "--downloads",
        panel=MEDIA,
        help="URL attachments downloaded at once, ahead of the requests (default: as many as -c).",
    ),
]
AttachRootOpt = Annotated[
    str | None,
    _opt(
        "--attach-root",
        panel=MEDIA,
        metavar="DIR",
        help="The folder local attachment paths are confined to, and relative ones start from "
        "(default: the input file's folder; for stdin the current directory).",
    ),
]
AllowPrivateUrlsOpt = Annotated[
    bool,
    _opt(
        "--allow-private-urls",
        panel=MEDIA,
        help="Let URL attachments reach loopback, private, link-local and other non-public addresses.",
    ),
]
MaxDownloadOpt = Annotated[
    str | None,
    _opt(
        "--max-download",
        panel=MEDIA,
        metavar="SIZE",
        help="Largest URL attachment to download; a larger one fails its row (default: --inline-limit).",
    ),
]

ContextOpt = Annotated[
    list[str] | None,
    _opt(
        "--context",
        panel=CONTEXT,
        metavar="FILE",
        help="A file (text, Markdown, PDF, image, … as --attach takes) sent before every row's prompt, "
        "with -s; cached once (Gemini context caching) when that is cheaper. Repeatable.",
    ),
]
ContextTextOpt = Annotated[
    str | None,
    _opt("--context-text", panel=CONTEXT, metavar="TEXT", help="Text sent before every row's prompt."),
]
ContextCacheOpt = Annotated[
    ContextCache,
    _opt(
        "--context-cache",
        panel=CONTEXT,
        help="auto: cache the shared context when the model can and the price table says it pays; "
        "on: whenever the model can; off: send it first in every request.",
    ),
]

MaxCostOpt = Annotated[
    float | None,
    _opt(
        "--max-cost",
        panel=COST,
        help="USD: stop dispatching before the spend plus the requests in flight would pass it; "
        "finished rows are kept (exit 3).",
    ),
]
PricesOpt = Annotated[
    str | None,
    _opt("--prices", panel=COST, help="JSON price table layered over the shipped one (see README)."),
]

CacheOpt = Annotated[
    str | None,
    _opt(
        "--cache",
        panel=CACHE,
        help="SQLite response cache (shared by runs, online and batch, and processes): a request "
        'answered before is served without an API call and marked "cached": true. Errors are not cached.',
    ),
]
ShardOpt = Annotated[
    str | None,
    _opt("--shard", panel=CACHE, help="K/N: only the rows whose id hashes to shard K of N (for N machines)."),
]

ApiKeyOpt = Annotated[str | None, _opt("--api-key", panel=CONNECTION, help=API_KEY_HELP)]
ApiKeyFileOpt = Annotated[
    str | None, _opt("--api-key-file", panel=CONNECTION, metavar="PATH", help=API_KEY_FILE_HELP)
]
BaseUrlOpt = Annotated[
    str | None,
    _opt("--base-url", panel=CONNECTION, help="API endpoint (default: GOOGLE_GEMINI_BASE_URL, else Google)."),
]
DebugOpt = Annotated[bool, _opt("--debug", panel=CONNECTION, help="Show tracebacks and debug logs.")]


def run(
    input: InputArg,
    input_format: InputFormatOpt = None,
    delimiter: DelimiterOpt = None,
    id_column: IdColumnOpt = None,
    template: TemplateOpt = None,
    template_file: TemplateFileOpt = None,
    prompt_column: PromptColumnOpt = None,
    system: SystemOpt = None,
    model: ModelOpt = None,
    temperature: TemperatureOpt = None,
    max_output_tokens: MaxOutputTokensOpt = None,
    json_schema: JsonSchemaOpt = None,
    timeout: TimeoutOpt = DEFAULT_TIMEOUT,
    concurrency: ConcurrencyOpt = DEFAULT_CONCURRENCY,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    max_attempts: MaxAttemptsOpt = 6,
    max_retry_time: MaxRetryTimeOpt = 600.0,
    output: OutputOpt = "-",
    output_format: OutputFormatOpt = None,
    keep_order: KeepOrderOpt = False,
    order_buffer: OrderBufferOpt = DEFAULT_ORDER_BUFFER,
    overwrite: OverwriteOpt = False,
    progress: ProgressOpt = ProgressMode.AUTO,
    quiet: QuietOpt = False,
    dry_run: DryRunOpt = False,
    batch: BatchOpt = False,
    detach: DetachOpt = False,
    fallback: FallbackOpt = Fallback.NONE,
    keep_files: KeepFilesOpt = False,
    batch_max_rows: BatchMaxRowsOpt = DEFAULT_BATCH_MAX_ROWS,
    batch_max_bytes: BatchMaxBytesOpt = "1.9GB",
    batch_name: BatchNameOpt = None,
    poll_interval: PollIntervalOpt = DEFAULT_POLL_INTERVAL,
    poll_max_interval: PollMaxIntervalOpt = DEFAULT_POLL_MAX_INTERVAL,
    attach: AttachOpt = None,
    inline_limit: InlineLimitOpt = "14MiB",
    downloads: DownloadsOpt = None,
    attach_root: AttachRootOpt = None,
    allow_private_urls: AllowPrivateUrlsOpt = False,
    max_download: MaxDownloadOpt = None,
    context: ContextOpt = None,
    context_text: ContextTextOpt = None,
    context_cache: ContextCacheOpt = ContextCache.AUTO,
    max_cost: MaxCostOpt = None,
    prices: PricesOpt = None,
    cache: CacheOpt = None,
    shard: ShardOpt = None,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    base_url: BaseUrlOpt = None,
    debug: DebugOpt = False,
) -> None:
    given = dict(locals())  # the first statement: every parameter, and nothing else
    from gembulk.cli.run_options import RunArgs, run_options

    args = RunArgs(**given)
    setup_logging(args.debug)
    options = run_options(args)  # a usage error is reported before the SDK is even imported
    with long_lived_objects():  # the modules of a run live until exit: see gembulk/startup.py
        import asyncio

        from gembulk.progress import make_observer
        from gembulk.run import run_job

    result = asyncio.run(run_job(options, make_observer(args.progress, quiet=args.quiet)))
    if result.error is not None:
        print_error(result.error)
    elif args.detach and not args.dry_run:
        for name in result.jobs:
            print(name, flush=True)
    raise typer.Exit(int(result.exit_code))
