"""The command line: options in, one call out, errors turned into one line and an exit code."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import traceback
from typing import Annotated

import typer

from gembulk import __version__
from gembulk.client import GenerationSettings
from gembulk.errors import ExitCode, GembulkError
from gembulk.retry import RetryPolicy
from gembulk.scheduler import Limits
from gembulk.settings import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MODEL,
    DEFAULT_TIMEOUT,
    ProgressMode,
    RunOptions,
    check_positive,
    resolve_api_key,
    resolve_base_url,
)
from gembulk.writers import OutputClosedError

EXIT_CODES_HELP = """
Exit codes: 0 every row succeeded; 1 the run finished and some rows failed; 2 bad usage or input,
nothing sent; 3 stopped early on a fatal API condition (invalid key, permission denied, unknown model,
per-day quota exhausted), finished rows kept; 130 interrupted (SIGINT/SIGTERM), finished rows kept.
"""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Bulk prompt processor for the Gemini API: one result record per input row.\n" + EXIT_CODES_HELP,
)

_debug = False


def _version(value: bool) -> None:
    if value:
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
    model: Annotated[str, typer.Option("-m", "--model", help="Gemini model name.")] = DEFAULT_MODEL,
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
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    _setup_logging(debug)
    from gembulk.progress import make_observer
    from gembulk.run import run_job

    check_positive("--concurrency", concurrency)
    check_positive("--rpm", rpm)
    check_positive("--tpm", tpm)
    check_positive("--max-attempts", max_attempts)
    check_positive("--timeout", timeout)
    options = RunOptions(
        input=input,
        output=output,
        input_format=input_format,
        output_format=output_format,
        template=template,
        template_file=template_file,
        prompt_column=prompt_column,
        id_column=id_column,
        model=model,
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
    )
    observer = make_observer(progress, quiet=quiet)
    result = asyncio.run(run_job(options, observer))
    if result.error is not None:
        _print_error(result.error)
    raise typer.Exit(int(result.exit_code))


@app.command("fake-server", help="Serve the fake Gemini API locally; prints its base URL as the first line.")
def fake_server(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 0,
    latency: Annotated[float, typer.Option(help="Seconds added to each generateContent.")] = 0.0,
    jitter: Annotated[float, typer.Option(help="Up to this many extra seconds, uniformly.")] = 0.0,
    rpm: Annotated[int, typer.Option(help="Requests per window per model (0: unlimited).")] = 0,
    tpm: Annotated[int, typer.Option(help="Prompt tokens per window per model (0: unlimited).")] = 0,
    rpd: Annotated[int, typer.Option(help="Requests per day per model (0: unlimited).")] = 0,
    window: Annotated[float, typer.Option(help="Seconds of the rpm/tpm window (60 = real time).")] = 60.0,
    day: Annotated[float, typer.Option(help="Seconds of the rpd window.")] = 86400.0,
    error_rate: Annotated[float, typer.Option(help="Share of requests failing with 500/503/dropped.")] = 0.0,
    bad_key: Annotated[list[str] | None, typer.Option(help="An API key to refuse (repeatable).")] = None,
    batch_pending: Annotated[float, typer.Option(help="Seconds a batch stays PENDING.")] = 1.0,
    batch_running: Annotated[float, typer.Option(help="Seconds a batch stays RUNNING.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed for faults and result shuffling.")] = 0,
    model: Annotated[
        list[str] | None, typer.Option(help="Another model name to accept (repeatable).")
    ] = None,
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
            bad_keys=tuple(bad_key or ()),
            batch_pending=batch_pending,
            batch_running=batch_running,
            seed=seed,
            models=tuple(model or ()),
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
    print(f"gembulk: error: {error.message}", file=sys.stderr)
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
