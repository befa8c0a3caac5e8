"""The command line: options in, one call out, errors turned into one line and an exit code."""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import sys
import traceback
from typing import Annotated

import typer

from gembulk.errors import ExitCode, GembulkError, NotReadyError, UsageError
from gembulk.outputs import OutputClosedError
from gembulk.retry import RetryPolicy
from gembulk.scheduler import Limits
from gembulk.settings import (
    DEFAULT_BATCH_MAX_ROWS,
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_POLL_MAX_INTERVAL,
    DEFAULT_TIMEOUT,
    BatchMode,
    BatchOptions,
    CollectOptions,
    GenerationSettings,
    ProgressMode,
    RunOptions,
    check_positive,
    parse_size,
    require_api_key,
    resolve_api_key,
    resolve_base_url,
)
from gembulk.startup import long_lived_objects

EXIT_CODES_HELP = """
Exit codes: 0 every row succeeded; 1 the run finished and some rows failed; 2 bad usage or input,
nothing sent; 3 stopped early on a fatal API condition (invalid key, permission denied, unknown model,
per-day quota exhausted), finished rows kept; 4 batch jobs not done yet (batch fetch, batch wait
--timeout); 130 interrupted (SIGINT/SIGTERM), finished rows kept.
"""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Bulk prompt processor for the Gemini API: one result record per input row.\n" + EXIT_CODES_HELP,
)

batch_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Batch API jobs submitted with `gembulk run … --batch [--detach]`: status, wait, fetch, cancel, "
    "list.\n"
    "JOB|STATEFILE is a job name (batches/…), the state file written beside OUT "
    "(OUT.gembulk-batch.json), or OUT itself.\n" + EXIT_CODES_HELP,
)
app.add_typer(batch_app, name="batch")


class Fallback(enum.StrEnum):
    NONE = "none"
    ONLINE = "online"


_debug = False


def _version(value: bool) -> None:
    if value:
        from gembulk import __version__

        print(f"gembulk {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    pass


@app.command(help="Run every row of INPUT (a file or - for stdin) through the model.\n" + EXIT_CODES_HELP)
def run(
    input: Annotated[str, typer.Argument(help="CSV, TSV, JSONL or TXT file of prompts, or - for stdin.")],
    output: Annotated[
        str, typer.Option("-o", "--output", help="Output file (resumable) or - for stdout.")
    ] = "-",
    template: Annotated[
        str | None, typer.Option("-t", "--template", help="Prompt template with {column} placeholders.")
    ] = None,
    template_file: Annotated[
        str | None, typer.Option("--template-file", help="Read the template from a file.")
    ] = None,
    prompt_column: Annotated[
        str | None, typer.Option("--prompt-column", help="Column holding the prompt (default: prompt).")
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option("--id-column", help="Column holding the row id (default: id, else row number)."),
    ] = None,
    input_format: Annotated[
        str | None, typer.Option("--input-format", help="csv, tsv, jsonl or txt.")
    ] = None,
    output_format: Annotated[str | None, typer.Option("--output-format", help="jsonl or csv.")] = None,
    model: Annotated[
        list[str] | None,
        typer.Option(
            "-m",
            "--model",
            help=f"Gemini model (default {DEFAULT_MODEL}); repeat it to run every row on each.",
        ),
    ] = None,
    system: Annotated[str | None, typer.Option("-s", "--system", help="System instruction.")] = None,
    temperature: Annotated[float | None, typer.Option("--temperature")] = None,
    max_output_tokens: Annotated[int | None, typer.Option("--max-output-tokens")] = None,
    json_schema: Annotated[
        str | None,
        typer.Option("--json-schema", help="JSON schema file; answers are JSON, parsed into 'parsed'."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("-c", "--concurrency", help="Most requests in flight (adapts below it on 429/503).")
    ] = DEFAULT_CONCURRENCY,
    rpm: Annotated[float | None, typer.Option("--rpm", help="Requests per minute to stay under.")] = None,
    tpm: Annotated[float | None, typer.Option("--tpm", help="Input tokens per minute to stay under.")] = None,
    max_attempts: Annotated[
        int, typer.Option("--max-attempts", help="Attempts per row, first included.")
    ] = 6,
    max_retry_time: Annotated[
        float, typer.Option("--max-retry-time", help="Give up retrying a row after this many seconds.")
    ] = 600.0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for one answer.")
    ] = DEFAULT_TIMEOUT,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key (default: GEMINI_API_KEY, then GOOGLE_API_KEY).")
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="API endpoint (default: GOOGLE_GEMINI_BASE_URL, else Google)."),
    ] = None,
    progress: Annotated[ProgressMode, typer.Option("--progress", help="auto, bar, plain, json or off.")] = (
        ProgressMode.AUTO
    ),
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No final summary.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the input, show the first prompts, send nothing.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing output instead of resuming it.")
    ] = False,
    batch: Annotated[
        bool,
        typer.Option(
            "--batch",
            help="Send the rows through the Batch API: half the price, answers within 24 h, no per-minute "
            'quota. Same records as online, plus "mode": "batch".',
        ),
    ] = False,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="With --batch: submit, write OUT.gembulk-batch.json, print the job names on stdout and "
            "exit 0; collect later with `gembulk batch fetch`.",
        ),
    ] = False,
    fallback: Annotated[
        Fallback,
        typer.Option(
            "--fallback",
            help="With --batch: 'online' finishes the rows of a FAILED, EXPIRED or CANCELLED job, and rows "
            "with a transient error line (429, 5xx), with the online scheduler in the same run.",
        ),
    ] = Fallback.NONE,
    keep_files: Annotated[
        bool,
        typer.Option(
            "--keep-files", help="With --batch: keep the uploaded input and the result files after the fetch."
        ),
    ] = False,
    batch_max_rows: Annotated[
        int,
        typer.Option(
            "--batch-max-rows", help="With --batch: most rows in one job; more rows make more jobs."
        ),
    ] = DEFAULT_BATCH_MAX_ROWS,
    batch_max_bytes: Annotated[
        str,
        typer.Option(
            "--batch-max-bytes",
            help="With --batch: largest input file of one job, e.g. 500MB (the service takes up to 2 GB).",
        ),
    ] = "1.9GB",
    batch_name: Annotated[
        str | None,
        typer.Option("--batch-name", help="With --batch: job display name (default: gembulk OUT-NAME)."),
    ] = None,
    poll_interval: Annotated[
        float,
        typer.Option(
            "--poll-interval", help="With --batch: seconds before the first poll; doubles each time."
        ),
    ] = DEFAULT_POLL_INTERVAL,
    poll_max_interval: Annotated[
        float, typer.Option("--poll-max-interval", help="With --batch: longest wait between two polls.")
    ] = DEFAULT_POLL_MAX_INTERVAL,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache",
            help="SQLite response cache (shared by runs, online and batch, and processes): a request "
            'answered before is served without an API call and marked "cached": true. Errors are not cached.',
        ),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option("--shard", help="K/N: only the rows whose id hashes to shard K of N (for N machines)."),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            "--max-cost",
            help="USD: stop dispatching before the spend plus the requests in flight would pass it; "
            "finished rows are kept (exit 3).",
        ),
    ] = None,
    prices: Annotated[
        str | None,
        typer.Option("--prices", help="JSON price table layered over the shipped one (see README)."),
    ] = None,
    attach: Annotated[
        list[str] | None,
        typer.Option(
            "--attach",
            metavar="COLUMN",
            help="Column whose values are media to send with the prompt: a local path, an http(s) URL or "
            "a files/… name. Repeatable.",
        ),
    ] = None,
    inline_limit: Annotated[
        str,
        typer.Option(
            "--inline-limit",
            help="Attachment bytes sent inline per request; larger ones are uploaded through the Files API.",
        ),
    ] = "14MiB",
    downloads: Annotated[
        int | None,
        typer.Option(
            "--downloads",
            help="URL attachments downloaded at once, ahead of the requests (default: as many as -c).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    _setup_logging(debug)
    with long_lived_objects():  # the modules of a run live until exit: see gembulk/startup.py
        from gembulk.progress import make_observer
        from gembulk.run import run_job
        from gembulk.shard import Shard

    batch_options = None
    if batch:
        check_positive("--batch-max-rows", batch_max_rows)
        check_positive("--poll-interval", poll_interval)
        check_positive("--poll-max-interval", poll_max_interval)
        batch_options = BatchOptions(
            mode=BatchMode.DETACH if detach else BatchMode.RUN,
            max_rows=batch_max_rows,
            max_bytes=parse_size("--batch-max-bytes", batch_max_bytes),
            poll_interval=poll_interval,
            poll_max_interval=max(poll_interval, poll_max_interval),
            fallback_online=fallback is Fallback.ONLINE,
            keep_files=keep_files,
            display_name=batch_name,
        )
    else:
        for flag, used in (
            ("--detach", detach),
            ("--fallback", fallback is not Fallback.NONE),
            ("--keep-files", keep_files),
            ("--batch-name", batch_name is not None),
        ):
            if used:
                raise UsageError(f"{flag} works only with --batch")
    check_positive("--concurrency", concurrency)
    check_positive("--rpm", rpm)
    check_positive("--tpm", tpm)
    check_positive("--max-attempts", max_attempts)
    check_positive("--timeout", timeout)
    check_positive("--max-cost", max_cost)
    check_positive("--downloads", downloads)
    models = tuple(dict.fromkeys(model or [DEFAULT_MODEL]))  # repeated -m, duplicates dropped, order kept
    options = RunOptions(
        cache_path=cache,
        shard=Shard.parse(shard) if shard is not None else None,
        max_cost=max_cost,
        prices_path=prices,
        input=input,
        output=output,
        input_format=input_format,
        output_format=output_format,
        template=template,
        template_file=template_file,
        prompt_column=prompt_column,
        id_column=id_column,
        model=models[0],
        fanout=models if len(models) > 1 else (),
        generation=GenerationSettings(
            system=system, temperature=temperature, max_output_tokens=max_output_tokens
        ),
        json_schema_path=json_schema,
        limits=Limits(concurrency=concurrency, rpm=rpm, tpm=tpm),
        retry=RetryPolicy(max_attempts=max_attempts, max_time=max_retry_time),
        timeout=timeout,
        api_key=resolve_api_key(api_key),
        base_url=resolve_base_url(base_url),
        progress=progress,
        quiet=quiet,
        dry_run=dry_run,
        overwrite=overwrite,
        batch=batch_options,
        attach=tuple(dict.fromkeys(attach or ())),
        inline_limit=parse_size("--inline-limit", inline_limit, allow_zero=True),
        downloads=downloads or concurrency,
    )
    observer = make_observer(progress, quiet=quiet)
    result = asyncio.run(run_job(options, observer))
    if result.error is not None:
        _print_error(result.error)
    elif detach and not dry_run:
        for name in result.jobs:
            print(name, flush=True)
    raise typer.Exit(int(result.exit_code))


# -- gembulk batch … ---------------------------------------------------------------------------------

_TargetArg = Annotated[
    str,
    typer.Argument(
        metavar="JOB|STATEFILE",
        help="A job name (batches/…), a state file (OUT.gembulk-batch.json), or OUT.",
    ),
]
_ApiKeyOpt = Annotated[
    str | None, typer.Option("--api-key", help="API key (default: GEMINI_API_KEY, then GOOGLE_API_KEY).")
]
_BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="API endpoint (default: GOOGLE_GEMINI_BASE_URL, else Google)."),
]
_DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]
_JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for machines instead of text.")]
_PollOpt = Annotated[
    float, typer.Option("--poll-interval", help="Seconds before the first poll; doubles each time.")
]
_PollMaxOpt = Annotated[float, typer.Option("--poll-max-interval", help="Longest wait between two polls.")]
_FallbackOpt = Annotated[
    Fallback | None,
    typer.Option(
        "--fallback",
        help="'online' finishes rows the batch did not answer (failed, expired or cancelled job, transient "
        "error line) with the online scheduler; default: what the submitting run said.",
    ),
]
_KeepOpt = Annotated[
    bool | None,
    typer.Option(
        "--keep-files/--delete-files",
        help="Keep (or delete) the uploaded input and result files after the fetch; default: what the "
        "submitting run said (delete unless it had --keep-files).",
    ),
]
_OutputOpt = Annotated[
    str | None,
    typer.Option("-o", "--output", help="Output file (default: the OUT the batch was submitted for)."),
]
_ProgressOpt = Annotated[ProgressMode, typer.Option("--progress", help="auto, bar, plain, json or off.")]
_QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No final summary.")]


def _connection(api_key: str | None, base_url: str | None):  # type: ignore[no-untyped-def]
    from gembulk.batch.commands import Connection

    return Connection(api_key=require_api_key(resolve_api_key(api_key)), base_url=resolve_base_url(base_url))


@batch_app.command("status", help="Show the state of a batch job, or of every job of a state file.")
def batch_status(
    target: _TargetArg,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="With a job name: the OUT whose state file lists it.")
    ] = None,
    as_json: _JsonOpt = False,
    api_key: _ApiKeyOpt = None,
    base_url: _BaseUrlOpt = None,
    debug: _DebugOpt = False,
) -> None:
    _setup_logging(debug)
    from gembulk.batch import commands

    print(asyncio.run(commands.status(target, output, _connection(api_key, base_url), as_json=as_json)))


@batch_app.command("cancel", help="Cancel a batch job, or every unfinished job of a state file.")
def batch_cancel(
    target: _TargetArg,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="With a job name: the OUT whose state file lists it.")
    ] = None,
    api_key: _ApiKeyOpt = None,
    base_url: _BaseUrlOpt = None,
    debug: _DebugOpt = False,
) -> None:
    _setup_logging(debug)
    from gembulk.batch import commands

    print(asyncio.run(commands.cancel(target, output, _connection(api_key, base_url))))


@batch_app.command("list", help="List the newest batch jobs of this API key.")
def batch_list(
    limit: Annotated[int, typer.Option("--limit", help="How many jobs to show, newest first.")] = 20,
    as_json: _JsonOpt = False,
    api_key: _ApiKeyOpt = None,
    base_url: _BaseUrlOpt = None,
    debug: _DebugOpt = False,
) -> None:
    _setup_logging(debug)
    from gembulk.batch import commands

    check_positive("--limit", limit)
    print(asyncio.run(commands.list_jobs(_connection(api_key, base_url), limit=limit, as_json=as_json)))


def _collect(
    mode: BatchMode,
    target: str,
    output: str | None,
    *,
    timeout: float | None,
    poll_interval: float,
    poll_max_interval: float,
    fallback: Fallback | None,
    keep_files: bool | None,
    progress: ProgressMode,
    quiet: bool,
    api_key: str | None,
    base_url: str | None,
) -> None:
    from gembulk.progress import make_observer
    from gembulk.run import collect

    check_positive("--poll-interval", poll_interval)
    check_positive("--poll-max-interval", poll_max_interval)
    check_positive("--timeout", timeout)
    options = BatchOptions(
        mode=mode,
        poll_interval=poll_interval,
        poll_max_interval=max(poll_interval, poll_max_interval),
        wait_timeout=timeout,
    )
    how = CollectOptions(
        api_key=resolve_api_key(api_key),
        base_url=resolve_base_url(base_url),
        batch=options,
        fallback_online=None if fallback is None else fallback is Fallback.ONLINE,
        keep_files=keep_files,
        progress=progress,
        quiet=quiet,
    )
    result = asyncio.run(collect(target, output, how, make_observer(progress, quiet=quiet)))
    if result.error is not None:
        _print_error(result.error)
    raise typer.Exit(int(result.exit_code))


@batch_app.command(
    "wait",
    help="Poll until the jobs have ended, then write OUT (as `run --batch` would). Exit 4 on --timeout.\n"
    + EXIT_CODES_HELP,
)
def batch_wait(
    target: _TargetArg,
    output: _OutputOpt = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up waiting after this many seconds (exit 4).")
    ] = None,
    poll_interval: _PollOpt = DEFAULT_POLL_INTERVAL,
    poll_max_interval: _PollMaxOpt = DEFAULT_POLL_MAX_INTERVAL,
    fallback: _FallbackOpt = None,
    keep_files: _KeepOpt = None,
    progress: _ProgressOpt = ProgressMode.AUTO,
    quiet: _QuietOpt = False,
    api_key: _ApiKeyOpt = None,
    base_url: _BaseUrlOpt = None,
    debug: _DebugOpt = False,
) -> None:
    _setup_logging(debug)
    _collect(
        BatchMode.WAIT,
        target,
        output,
        timeout=timeout,
        poll_interval=poll_interval,
        poll_max_interval=poll_max_interval,
        fallback=fallback,
        keep_files=keep_files,
        progress=progress,
        quiet=quiet,
        api_key=api_key,
        base_url=base_url,
    )


@batch_app.command(
    "fetch",
    help="Write OUT if the jobs have ended, else exit 4 and touch nothing. Safe to run again and again "
    "(e.g. from cron until it exits 0 or 1).\n" + EXIT_CODES_HELP,
)
def batch_fetch(
    target: _TargetArg,
    output: _OutputOpt = None,
    fallback: _FallbackOpt = None,
    keep_files: _KeepOpt = None,
    progress: _ProgressOpt = ProgressMode.AUTO,
    quiet: _QuietOpt = False,
    api_key: _ApiKeyOpt = None,
    base_url: _BaseUrlOpt = None,
    debug: _DebugOpt = False,
) -> None:
    _setup_logging(debug)
    _collect(
        BatchMode.FETCH,
        target,
        output,
        timeout=None,
        poll_interval=DEFAULT_POLL_INTERVAL,
        poll_max_interval=DEFAULT_POLL_MAX_INTERVAL,
        fallback=fallback,
        keep_files=keep_files,
        progress=progress,
        quiet=quiet,
        api_key=api_key,
        base_url=base_url,
    )


@app.command("fake-server", help="Serve the fake Gemini API locally; prints its base URL as the first line.")
def fake_server(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 0,
    latency: Annotated[float, typer.Option(help="Seconds added to each generateContent.")] = 0.0,
    jitter: Annotated[float, typer.Option(help="Up to this many extra seconds, uniformly.")] = 0.0,
    rpm: Annotated[int, typer.Option(help="Requests per window per key and model (0: unlimited).")] = 0,
    tpm: Annotated[int, typer.Option(help="Prompt tokens per window per key and model (0: unlimited).")] = 0,
    rpd: Annotated[int, typer.Option(help="Requests per day per key and model (0: unlimited).")] = 0,
    window: Annotated[float, typer.Option(help="Seconds of the rpm/tpm window (60 = real time).")] = 60.0,
    day: Annotated[float, typer.Option(help="Seconds of the rpd window.")] = 86400.0,
    error_rate: Annotated[float, typer.Option(help="Share of requests failing with 500/503/dropped.")] = 0.0,
    api_error_rate: Annotated[
        float, typer.Option(help="Share of Files/Batch API calls failing with 500/503.")
    ] = 0.0,
    bad_key: Annotated[list[str] | None, typer.Option(help="An API key to refuse (repeatable).")] = None,
    batch_pending: Annotated[float, typer.Option(help="Seconds a batch stays PENDING.")] = 1.0,
    batch_running: Annotated[float, typer.Option(help="Seconds a batch stays RUNNING.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed for faults and result shuffling.")] = 0,
    model: Annotated[
        list[str] | None, typer.Option(help="Another model name to accept (repeatable).")
    ] = None,
    lenient: Annotated[
        bool, typer.Option(help="Accept requests the real API refuses (no request validation).")
    ] = False,
    file_processing: Annotated[
        float, typer.Option(help="Seconds an uploaded video stays PROCESSING before it is ACTIVE.")
    ] = 1.0,
) -> None:
    from gembulk.fake import FakeConfig, serve

    serve(
        FakeConfig(
            host=host,
            port=port,
            latency=latency,
            jitter=jitter,
            rpm=rpm,
            tpm=tpm,
            rpd=rpd,
            window=window,
            day=day,
            error_rate=error_rate,
            api_error_rate=api_error_rate,
            bad_keys=tuple(bad_key or ()),
            batch_pending=batch_pending,
            batch_running=batch_running,
            seed=seed,
            models=tuple(model or ()),
            lenient=lenient,
            file_processing=file_processing,
        )
    )


def _setup_logging(debug: bool) -> None:
    global _debug
    _debug = debug
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("gembulk: %(message)s"))
    logger = logging.getLogger("gembulk")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    # The SDK logs "AFC is enabled" at INFO on every call; that is noise in a bulk run.
    logging.getLogger("google_genai").setLevel(logging.DEBUG if debug else logging.WARNING)


def _print_error(error: GembulkError) -> None:
    # "Not done yet" is an expected answer (cron polls until exit 0 or 1), not an error.
    label = "" if isinstance(error, NotReadyError) else "error: "
    print(f"gembulk: {label}{error.message}", file=sys.stderr)
    if error.hint:
        print(f"gembulk: hint: {error.hint}", file=sys.stderr)


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main() -> None:
    """Console-script entry point: every failure becomes one readable line and a documented exit code."""
    try:
        code = app(standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except KeyboardInterrupt:
        print("gembulk: interrupted", file=sys.stderr)
        sys.exit(ExitCode.INTERRUPTED)
    except BaseException as raised:
        exc = _unwrap(raised)
        sys.exit(_report(exc))
    sys.exit(code if isinstance(code, int) else 0)


def _report(exc: BaseException) -> int:
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, typer.Exit):
        return exc.exit_code
    if isinstance(exc, (typer.Abort, KeyboardInterrupt)):
        print("gembulk: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    if isinstance(exc, typer.TyperException):  # usage errors from option parsing: typer formats them
        show = getattr(exc, "show", None)
        if show is not None:
            show(file=sys.stderr)
        else:
            print(f"gembulk: error: {exc.format_message()}", file=sys.stderr)
        return ExitCode.USAGE
    if _debug or os.environ.get("GEMBULK_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, GembulkError):
        _print_error(exc)
        return exc.exit_code
    if isinstance(exc, OutputClosedError):
        return ExitCode.OK  # stdout closed by the reader (`| head`): not an error of ours
    print(
        f"gembulk: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
        file=sys.stderr,
    )
    return 70
