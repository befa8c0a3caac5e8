"""`gembulk batch status|cancel|list|wait|fetch`: the Batch API jobs a `run --batch` submitted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import TYPE_CHECKING, Annotated

import typer

from gembulk.cli.common import (
    EXIT_CODES_HELP,
    ApiKeyFileOpt,
    ApiKeyOpt,
    BaseUrlOpt,
    DebugOpt,
    ProgressOpt,
    QuietOpt,
    print_error,
    setup_logging,
)
from gembulk.settings import (
    DEFAULT_POLL_INTERVAL,
    DEFAULT_POLL_MAX_INTERVAL,
    BatchMode,
    BatchOptions,
    CollectOptions,
    Fallback,
    ProgressMode,
    api_key_of,
    check_positive,
    require_api_key,
    resolve_base_url,
)

if TYPE_CHECKING:
    from gembulk.batch.commands import Connection

EXAMPLES = """\
Examples:

\b
  # submit, save the state beside OUT (out.jsonl.gembulk-batch.json), exit
  gembulk run in.csv -t "{question}" -o out.jsonl --batch --detach
  # the state, age and row counts of each job submitted for out.jsonl
  gembulk batch status out.jsonl
  # write out.jsonl if the jobs have ended, else exit 4 (cron: until 0 or 1)
  gembulk batch fetch out.jsonl --progress plain
  # poll until the jobs end (at most an hour), then write out.jsonl
  gembulk batch wait out.jsonl --timeout 3600
"""

batch_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Batch API jobs submitted with `gembulk run … --batch [--detach]`: status, wait, fetch, cancel, "
    "list.\n"
    "JOB|STATEFILE is a job name (batches/…), the state file written beside OUT "
    "(OUT.gembulk-batch.json), or OUT itself.\n" + EXIT_CODES_HELP,
    epilog=EXAMPLES,
)

_TargetArg = Annotated[
    str,
    typer.Argument(
        metavar="JOB|STATEFILE",
        help="A job name (batches/…), a state file (OUT.gembulk-batch.json), or OUT.",
    ),
]
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
_JobOutputOpt = Annotated[
    str | None, typer.Option("-o", "--output", help="With a job name: the OUT whose state file lists it.")
]


def _connection(api_key: str | None, api_key_file: str | None, base_url: str | None) -> Connection:
    """How to reach the API; checked before the batch modules (and the SDK with them) are imported."""
    key, url = require_api_key(api_key_of(api_key, api_key_file)), resolve_base_url(base_url)
    from gembulk.batch.commands import Connection

    return Connection(api_key=key, base_url=url)


def _print_answer(
    ask: Callable[[ModuleType, Connection], Awaitable[str]],
    api_key: str | None,
    api_key_file: str | None,
    base_url: str | None,
) -> None:
    """Reach the API, ask the batch commands (imported only then: they bring the SDK), print the answer."""
    connection = _connection(api_key, api_key_file, base_url)
    import asyncio

    from gembulk.batch import commands

    print(asyncio.run(ask(commands, connection)))


@batch_app.command("status", help="Show the state of a batch job, or of every job of a state file.")
def batch_status(
    target: _TargetArg,
    output: _JobOutputOpt = None,
    as_json: _JsonOpt = False,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    base_url: BaseUrlOpt = None,
    debug: DebugOpt = False,
) -> None:
    setup_logging(debug)
    _print_answer(
        lambda commands, connection: commands.status(target, output, connection, as_json=as_json),
        api_key,
        api_key_file,
        base_url,
    )


@batch_app.command("cancel", help="Cancel a batch job, or every unfinished job of a state file.")
def batch_cancel(
    target: _TargetArg,
    output: _JobOutputOpt = None,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    base_url: BaseUrlOpt = None,
    debug: DebugOpt = False,
) -> None:
    setup_logging(debug)
    _print_answer(
        lambda commands, connection: commands.cancel(target, output, connection),
        api_key,
        api_key_file,
        base_url,
    )


@batch_app.command("list", help="List the newest batch jobs of this API key.")
def batch_list(
    limit: Annotated[int, typer.Option("--limit", help="How many jobs to show, newest first.")] = 20,
    as_json: _JsonOpt = False,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    base_url: BaseUrlOpt = None,
    debug: DebugOpt = False,
) -> None:
    setup_logging(debug)
    check_positive("--limit", limit)
    _print_answer(
        lambda commands, connection: commands.list_jobs(connection, limit=limit, as_json=as_json),
        api_key,
        api_key_file,
        base_url,
    )


def _wait_options(timeout: float | None, poll_interval: float, poll_max_interval: float) -> BatchOptions:
    check_positive("--poll-interval", poll_interval)
    check_positive("--poll-max-interval", poll_max_interval)
    check_positive("--timeout", timeout)
    return BatchOptions(
        mode=BatchMode.WAIT,
        poll_interval=poll_interval,
        poll_max_interval=max(poll_interval, poll_max_interval),
        wait_timeout=timeout,
    )


def _collect(
    target: str,
    output: str | None,
    batch: BatchOptions,
    fallback: Fallback | None,
    keep_files: bool | None,
    progress: ProgressMode,
    quiet: bool,
    api_key: str | None,
    api_key_file: str | None,
    base_url: str | None,
) -> None:
    how = CollectOptions(
        api_key=api_key_of(api_key, api_key_file),
        base_url=resolve_base_url(base_url),
        batch=batch,
        fallback_online=None if fallback is None else fallback is Fallback.ONLINE,
        keep_files=keep_files,
        progress=progress,
        quiet=quiet,
    )
    import asyncio

    from gembulk.collect import collect
    from gembulk.progress import make_observer

    result = asyncio.run(collect(target, output, how, make_observer(progress, quiet=quiet)))
    if result.error is not None:
        print_error(result.error)
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
    progress: ProgressOpt = ProgressMode.AUTO,
    quiet: QuietOpt = False,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    base_url: BaseUrlOpt = None,
    debug: DebugOpt = False,
) -> None:
    setup_logging(debug)
    batch = _wait_options(timeout, poll_interval, poll_max_interval)
    _collect(target, output, batch, fallback, keep_files, progress, quiet, api_key, api_key_file, base_url)


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
    progress: ProgressOpt = ProgressMode.AUTO,
    quiet: QuietOpt = False,
    api_key: ApiKeyOpt = None,
    api_key_file: ApiKeyFileOpt = None,
    base_url: BaseUrlOpt = None,
    debug: DebugOpt = False,
) -> None:
    setup_logging(debug)
    batch = BatchOptions(mode=BatchMode.FETCH)
    _collect(target, output, batch, fallback, keep_files, progress, quiet, api_key, api_key_file, base_url)
