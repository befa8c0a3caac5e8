"""What the commands share: the exit-code help, the options every command takes, logging, error lines."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from gembulk.errors import GembulkError, NotReadyError
from gembulk.settings import ProgressMode

EXIT_CODES_HELP = """
Exit codes: 0 every row succeeded; 1 the run finished and some rows failed; 2 bad usage or input
(an unwritable -o included), nothing sent, no output touched; 3 stopped early on a fatal API
condition (invalid key, permission denied, unknown model, per-day quota exhausted, --max-cost) or
because OUT could not be written (disk full), finished rows kept; 4 batch jobs not done yet (batch
fetch, batch wait --timeout) or another gembulk is writing the same output; 130 interrupted
(SIGINT/SIGTERM), finished rows kept; 141 the reader of the output went away (| head).
"""


API_KEY_HELP = (
    "API key, or @PATH to read it from a file (default: GEMINI_API_KEY, then GOOGLE_API_KEY). "
    "A key typed here is visible to every user of the machine (ps): prefer the variable."
)
API_KEY_FILE_HELP = "Read the API key from this file."
ApiKeyOpt = Annotated[str | None, typer.Option("--api-key", help=API_KEY_HELP)]
ApiKeyFileOpt = Annotated[str | None, typer.Option("--api-key-file", metavar="PATH", help=API_KEY_FILE_HELP)]
BaseUrlOpt = Annotated[
    str | None,
    typer.Option("--base-url", help="API endpoint (default: GOOGLE_GEMINI_BASE_URL, else Google)."),
]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]
ProgressOpt = Annotated[ProgressMode, typer.Option("--progress", help="auto, bar, plain, json or off.")]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="No final summary.")]

_debug = False


def debugging() -> bool:
    """Whether this command runs with --debug (tracebacks of unexpected errors)."""
    return _debug


def setup_logging(debug: bool) -> None:
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


def print_error(error: GembulkError) -> None:
    if error.silent:  # the exit code says it (141: the reader went away, like a tool ended by SIGPIPE)
        return
    # "Not done yet" is an expected answer (cron polls until exit 0 or 1), not an error.
    label = "" if isinstance(error, NotReadyError) else "error: "
    print(f"gembulk: {label}{error.message}", file=sys.stderr)
    if error.hint:
        print(f"gembulk: hint: {error.hint}", file=sys.stderr)
