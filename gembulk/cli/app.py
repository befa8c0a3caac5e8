"""The `gembulk` command: its subcommands put together, every failure turned into one line and an exit code.

The commands import the run machinery (and with it google-genai and aiohttp) only when they run, so
`--help`, `--version` and usage errors answer at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer

from gembulk.cli import batch_commands, fake_command, run_command, run_help
from gembulk.cli.common import EXIT_CODES_HELP, debugging, print_error
from gembulk.cli.help import PanelledCommand
from gembulk.errors import ExitCode, GembulkError

EXAMPLES = """\
Examples:

\b
  gembulk run reviews.csv -t "Summarize: {text}" -o summaries.jsonl
  cat prompts.txt | gembulk run - --input-format txt | jq -r .response

More in `gembulk run --help` and `gembulk batch --help`.
"""

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Bulk prompt processor for the Gemini API: one result record per input row.\n" + EXIT_CODES_HELP,
    epilog=EXAMPLES,
)
app.command("run", cls=PanelledCommand, help=run_help.HELP, epilog=run_help.EXAMPLES)(run_command.run)
app.command("fake-server", help=fake_command.HELP)(fake_command.fake_server)
app.add_typer(batch_commands.batch_app, name="batch")


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
    if debugging() or os.environ.get("GEMBULK_DEBUG"):
        traceback.print_exception(exc, file=sys.stderr)
    if isinstance(exc, GembulkError):
        print_error(exc)
        return exc.exit_code
    if isinstance(exc, BrokenPipeError):  # stdout's reader went away while a command printed to it
        return ExitCode.OUTPUT_CLOSED
    print(
        f"gembulk: internal error: {type(exc).__name__}: {exc} (run with --debug for details)",
        file=sys.stderr,
    )
    return 70
